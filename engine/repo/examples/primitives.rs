//! Cost of the pipeline's primitives on this machine (CPU s/GiB and MB/s, one thread):
//! `cargo run --release -p kstash-repo --example primitives -- FILE [MiB]`.

use sha2::{Digest, Sha256};
use std::time::Instant;

fn cpu() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 / 1e9
}

fn main() {
    let path = std::env::args().nth(1).unwrap();
    let mb: usize = std::env::args()
        .nth(2)
        .map(|s| s.parse().unwrap())
        .unwrap_or(256);
    let mut data = std::fs::read(&path).unwrap();
    data.truncate(mb << 20);
    let gib = data.len() as f64 / (1u64 << 30) as f64;
    let rep = |name: &str, f: &mut dyn FnMut()| {
        let (c, t) = (cpu(), Instant::now());
        f();
        println!(
            "{name:<24} {:6.2} s/GiB cpu, {:7.0} MB/s wall",
            (cpu() - c) / gib,
            data.len() as f64 / 1e6 / t.elapsed().as_secs_f64()
        );
    };
    let chunks: Vec<&[u8]> = data.chunks(1536 << 10).collect();
    rep("sha256 (1.5 MiB blobs)", &mut || {
        for c in &chunks {
            std::hint::black_box(Sha256::digest(c));
        }
    });
    for level in [1, 2, 3, -1, -3] {
        let mut z = zstd::bulk::Compressor::new(level).unwrap();
        let mut out = Vec::with_capacity(zstd::zstd_safe::compress_bound(1536 << 10));
        let mut total = 0;
        rep(&format!("zstd {level}"), &mut || {
            for c in &chunks {
                out.clear();
                z.compress_to_buffer(c, &mut out).unwrap();
                total += out.len();
            }
        });
        println!("   ratio {:.3}", total as f64 / data.len() as f64);
    }
    {
        use aes256ctr_poly1305aes::aead::AeadInPlace;
        use aes256ctr_poly1305aes::Aes256CtrPoly1305Aes;
        let key = [7u8; 64];
        let mut buf = data.clone();
        rep("aes-ctr+poly1305", &mut || {
            for c in buf.chunks_mut(1536 << 10) {
                let cipher =
                    Aes256CtrPoly1305Aes::new(aes256ctr_poly1305aes::Key::from_slice(&key));
                let n = [1u8; 16];
                std::hint::black_box(
                    cipher
                        .encrypt_in_place_detached(
                            aes256ctr_poly1305aes::aead::Nonce::<Aes256CtrPoly1305Aes>::from_slice(
                                &n,
                            ),
                            b"",
                            c,
                        )
                        .unwrap(),
                );
            }
        });
    }
    {
        use rustic_cdc::{Rabin64, RollingHash64};
        let mut r = Rabin64::new_with_polynom(6, &0x3DA3358B4DC173);
        let mut cuts = 0;
        rep("rustic_cdc slide (all bytes)", &mut || {
            for &b in &data {
                r.slide(b);
                if r.hash & ((1 << 20) - 1) == 0 {
                    cuts += 1;
                }
            }
        });
        println!("   cuts {cuts}");
    }
    rep("memcpy", &mut || {
        let mut v = Vec::with_capacity(data.len());
        v.extend_from_slice(&data);
        std::hint::black_box(v);
    });
}
