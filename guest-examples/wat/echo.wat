;; echo.wat: a WASI preview 1 module that copies stdin to stdout with
;; fd_read/fd_write (4 KiB at a time) until end of input, then returns.
(module
  (import "wasi_snapshot_preview1" "fd_read"
    (func $fd_read (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write"
    (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit"
    (func $proc_exit (param i32)))
  (memory (export "memory") 1)
  ;; Layout: [0..8) iovec {buf, len}, [8..12) nread/nwritten, [1024..5120) buffer.
  (func (export "_start")
    (local $n i32)
    (local $off i32)
    (loop $read
      ;; iovec = {1024, 4096}
      (i32.store (i32.const 0) (i32.const 1024))
      (i32.store (i32.const 4) (i32.const 4096))
      (if (call $fd_read (i32.const 0) (i32.const 0) (i32.const 1) (i32.const 8))
        (then (call $proc_exit (i32.const 1))))
      (local.set $n (i32.load (i32.const 8)))
      ;; 0 bytes read: end of input.
      (if (i32.eqz (local.get $n)) (then (return)))
      ;; Write the chunk, looping over short writes.
      (local.set $off (i32.const 1024))
      (loop $write
        (i32.store (i32.const 0) (local.get $off))
        (i32.store (i32.const 4) (local.get $n))
        (if (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8))
          (then (call $proc_exit (i32.const 1))))
        (local.set $off (i32.add (local.get $off) (i32.load (i32.const 8))))
        (local.set $n (i32.sub (local.get $n) (i32.load (i32.const 8))))
        (br_if $write (i32.gt_s (local.get $n) (i32.const 0))))
      (br $read))))
