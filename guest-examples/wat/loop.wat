;; loop.wat: `_start` loops forever (stopped only by fuel, epoch or deadline).
(module
  (memory (export "memory") 1)
  (func (export "_start")
    (loop $forever
      (br $forever))))
