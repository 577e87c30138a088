;; import_unknown.wat: imports a function "env" "nope" that no host provides;
;; it must be refused at link/instantiate time.
(module
  (import "env" "nope" (func $nope))
  (memory (export "memory") 1)
  (func (export "_start")
    (call $nope)))
