//! Load generator for the RESP benchmarks (`benches/resp.sh`): the same
//! work against a wasque node (Disque's commands) and a redis-server (the
//! nearest Redis commands), over plain TCP with a minimal RESP client.
//!
//! - `cycle ADDR disque|redis WORKERS SECS QUEUE`: each worker loops
//!   add -> get -> ack (ADDJOB/GETJOB/ACKJOB, or LPUSH/RPOP/DEL) and the
//!   run prints cycles per second and p50/p99 of one cycle.
//! - `fill ADDR disque|redis JOBS SIZE QUEUE`: adds JOBS distinct random
//!   bodies of SIZE bytes, pipelined 1,000 at a time.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

struct Conn {
    r: BufReader<TcpStream>,
    w: TcpStream,
}

#[derive(Debug)]
enum V {
    Str(Vec<u8>),
    /// An integer reply; its value is not needed by the load generator.
    Int,
    Nil,
    Arr(Vec<V>),
}

impl Conn {
    fn open(addr: &str) -> Result<Conn> {
        let s = TcpStream::connect(addr).with_context(|| format!("connect {addr}"))?;
        s.set_nodelay(true)?;
        s.set_read_timeout(Some(Duration::from_secs(30)))?;
        Ok(Conn {
            r: BufReader::with_capacity(1 << 16, s.try_clone()?),
            w: s,
        })
    }

    fn encode(out: &mut Vec<u8>, args: &[&[u8]]) {
        out.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
        for a in args {
            out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
            out.extend_from_slice(a);
            out.extend_from_slice(b"\r\n");
        }
    }

    fn call(&mut self, args: &[&[u8]]) -> Result<V> {
        let mut out = Vec::with_capacity(256);
        Conn::encode(&mut out, args);
        self.w.write_all(&out)?;
        self.read()
    }

    fn read(&mut self) -> Result<V> {
        let mut line = Vec::new();
        self.r.read_until(b'\n', &mut line)?;
        if line.len() < 3 {
            bail!("connection closed");
        }
        let body = &line[1..line.len() - 2];
        let num = || -> Result<i64> { Ok(std::str::from_utf8(body)?.parse()?) };
        Ok(match line[0] {
            b'+' => V::Str(body.to_vec()),
            b'-' => bail!("error reply: {}", String::from_utf8_lossy(body)),
            b':' => {
                num()?;
                V::Int
            }
            b'$' => match num()? {
                -1 => V::Nil,
                n => {
                    let mut b = vec![0u8; n as usize + 2];
                    std::io::Read::read_exact(&mut self.r, &mut b)?;
                    b.truncate(n as usize);
                    V::Str(b)
                }
            },
            b'*' => match num()? {
                -1 => V::Nil,
                n => (0..n)
                    .map(|_| self.read())
                    .collect::<Result<Vec<_>>>()
                    .map(V::Arr)?,
            },
            other => bail!("bad reply type {other}"),
        })
    }
}

fn rand_body(seed: &mut u64, size: usize) -> Vec<u8> {
    (0..size)
        .map(|_| {
            *seed ^= *seed << 13;
            *seed ^= *seed >> 7;
            *seed ^= *seed << 17;
            b'a' + (*seed % 26) as u8
        })
        .collect()
}

fn cycle(addr: &str, redis: bool, workers: usize, secs: u64, queue: &str) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(secs);
    let handles: Vec<_> = (0..workers)
        .map(|w| {
            let (addr, queue) = (addr.to_string(), queue.to_string());
            std::thread::spawn(move || -> Result<Vec<u64>> {
                let mut c = Conn::open(&addr)?;
                let mut seed = 0x9E37_79B9_7F4A_7C15 ^ (w as u64 + 1);
                let mut lat = Vec::new();
                while Instant::now() < deadline {
                    let body = rand_body(&mut seed, 100);
                    let t = Instant::now();
                    if redis {
                        c.call(&[b"LPUSH", queue.as_bytes(), &body])?;
                        c.call(&[b"RPOP", queue.as_bytes()])?;
                        c.call(&[b"DEL", b"ack-key"])?;
                    } else {
                        c.call(&[b"ADDJOB", queue.as_bytes(), &body, b"0"])?;
                        let got = c.call(&[b"GETJOB", b"FROM", queue.as_bytes()])?;
                        let id = match got {
                            V::Arr(jobs) => match jobs.into_iter().next() {
                                Some(V::Arr(mut job)) if job.len() >= 2 => match job.swap_remove(1)
                                {
                                    V::Str(id) => id,
                                    other => bail!("bad id {other:?}"),
                                },
                                other => bail!("bad job {other:?}"),
                            },
                            other => bail!("bad GETJOB reply {other:?}"),
                        };
                        c.call(&[b"ACKJOB", &id])?;
                    }
                    lat.push(t.elapsed().as_micros() as u64);
                }
                Ok(lat)
            })
        })
        .collect();
    let mut all = Vec::new();
    for h in handles {
        all.extend(h.join().map_err(|_| anyhow::anyhow!("worker panicked"))??);
    }
    all.sort_unstable();
    let pct = |p: f64| {
        all.get(((all.len() as f64 * p) as usize).min(all.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0)
    };
    println!(
        "cycles_per_sec={:.0} p50_us={} p99_us={} cycles={}",
        all.len() as f64 / secs as f64,
        pct(0.50),
        pct(0.99),
        all.len()
    );
    Ok(())
}

fn fill(addr: &str, redis: bool, jobs: usize, size: usize, queue: &str) -> Result<()> {
    let mut c = Conn::open(addr)?;
    let mut seed = 0x2545_F491_4F6C_DD1D;
    let t = Instant::now();
    let mut done = 0;
    while done < jobs {
        let n = (jobs - done).min(1_000);
        let mut out = Vec::with_capacity(n * (size + 64));
        for _ in 0..n {
            let body = rand_body(&mut seed, size);
            if redis {
                Conn::encode(&mut out, &[b"LPUSH", queue.as_bytes(), &body]);
            } else {
                Conn::encode(&mut out, &[b"ADDJOB", queue.as_bytes(), &body, b"0"]);
            }
        }
        c.w.write_all(&out)?;
        for _ in 0..n {
            c.read()?;
        }
        done += n;
    }
    println!("filled={done} secs={:.2}", t.elapsed().as_secs_f64());
    Ok(())
}

fn main() -> Result<()> {
    let a: Vec<String> = std::env::args().collect();
    let usage = "usage: resp_load cycle ADDR disque|redis WORKERS SECS QUEUE | fill ADDR disque|redis JOBS SIZE QUEUE";
    if a.len() != 7 {
        bail!("{usage}");
    }
    let redis = match a[3].as_str() {
        "redis" => true,
        "disque" => false,
        _ => bail!("{usage}"),
    };
    match a[1].as_str() {
        "cycle" => cycle(&a[2], redis, a[4].parse()?, a[5].parse()?, &a[6]),
        "fill" => fill(&a[2], redis, a[4].parse()?, a[5].parse()?, &a[6]),
        _ => bail!("{usage}"),
    }
}
