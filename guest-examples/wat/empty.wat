;; empty.wat: a module whose `_start` does nothing (success, empty output).
(module
  (memory (export "memory") 1)
  (func (export "_start")))
