// What the AssemblyScript guests share: the whole payload from stdin. A
// wasque job's payload is the program's stdin, its stdout is the result,
// stderr is its log and the exit status tells success (0) from failure.

/** All of stdin, in a buffer of its exact length. */
export function readPayload(): Uint8Array {
  let buf = new ArrayBuffer(64 * 1024);
  let n = 0;
  while (true) {
    if (n == buf.byteLength) {
      const bigger = new ArrayBuffer(buf.byteLength * 2);
      memory.copy(changetype<usize>(bigger), changetype<usize>(buf), n);
      buf = bigger;
    }
    const got = process.stdin.read(buf, n);
    if (got <= 0) break;
    n += got;
  }
  return Uint8Array.wrap(buf, 0, n);
}
