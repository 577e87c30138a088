;; nostart.wat: a valid module with no `_start` export (not a WASI command).
(module
  (memory (export "memory") 1)
  (func (export "main")))
