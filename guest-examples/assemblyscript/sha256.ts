// sha256 in AssemblyScript: prints the lowercase hex SHA-256 digest of the
// payload and a newline, byte for byte what the Rust example
// guest-examples/sha256 prints (FIPS 180-4, written out here: the language
// has no standard hash library).
import { readPayload } from "./payload";

const K: StaticArray<u32> = [
  0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
  0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
  0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
  0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
  0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
  0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
  0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
  0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
];

const H = new StaticArray<u32>(8);
const W = new StaticArray<u32>(64);

// One 64-byte block of `p` starting at `at` into H.
function compress(p: Uint8Array, at: i32): void {
  for (let i = 0; i < 16; i++) {
    const j = at + 4 * i;
    W[i] = (<u32>p[j] << 24) | (<u32>p[j + 1] << 16) | (<u32>p[j + 2] << 8) | <u32>p[j + 3];
  }
  for (let i = 16; i < 64; i++) {
    const w15 = W[i - 15];
    const w2 = W[i - 2];
    const s0 = rotr<u32>(w15, 7) ^ rotr<u32>(w15, 18) ^ (w15 >>> 3);
    const s1 = rotr<u32>(w2, 17) ^ rotr<u32>(w2, 19) ^ (w2 >>> 10);
    W[i] = W[i - 16] + s0 + W[i - 7] + s1;
  }
  let a = H[0], b = H[1], c = H[2], d = H[3], e = H[4], f = H[5], g = H[6], h = H[7];
  for (let i = 0; i < 64; i++) {
    const t1 = h + (rotr<u32>(e, 6) ^ rotr<u32>(e, 11) ^ rotr<u32>(e, 25)) + ((e & f) ^ (~e & g)) + K[i] + W[i];
    const t2 = (rotr<u32>(a, 2) ^ rotr<u32>(a, 13) ^ rotr<u32>(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));
    h = g;
    g = f;
    f = e;
    e = d + t1;
    d = c;
    c = b;
    b = a;
    a = t1 + t2;
  }
  H[0] += a; H[1] += b; H[2] += c; H[3] += d;
  H[4] += e; H[5] += f; H[6] += g; H[7] += h;
}

function sha256(data: Uint8Array): StaticArray<u32> {
  H[0] = 0x6a09e667; H[1] = 0xbb67ae85; H[2] = 0x3c6ef372; H[3] = 0xa54ff53a;
  H[4] = 0x510e527f; H[5] = 0x9b05688c; H[6] = 0x1f83d9ab; H[7] = 0x5be0cd19;
  const len = data.length;
  const whole = len & ~63;
  for (let at = 0; at < whole; at += 64) compress(data, at);
  // The tail, 0x80, zeros and the length in bits: one or two blocks.
  const rest = len - whole;
  const tail = new Uint8Array(rest < 56 ? 64 : 128);
  for (let i = 0; i < rest; i++) tail[i] = data[whole + i];
  tail[rest] = 0x80;
  const bits = <u64>len * 8;
  for (let i = 0; i < 8; i++) tail[tail.length - 1 - i] = <u8>(bits >>> (8 * i));
  for (let at = 0; at < tail.length; at += 64) compress(tail, at);
  return H;
}

const HEX = "0123456789abcdef";
const digest = sha256(readPayload());
let out = "";
for (let i = 0; i < 8; i++) {
  for (let shift = 28; shift >= 0; shift -= 4) out += HEX.charAt(<i32>((digest[i] >>> shift) & 0xf));
}
process.stdout.write(out + "\n");
