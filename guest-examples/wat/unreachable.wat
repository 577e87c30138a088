;; unreachable.wat: `_start` executes `unreachable`, i.e. traps immediately.
(module
  (memory (export "memory") 1)
  (func (export "_start")
    unreachable))
