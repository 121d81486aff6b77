//! Tens of thousands of truncated and bit-flipped copies of every small fixture: the reader must
//! return (Ok or Err) without panicking, and never allocate beyond a small multiple of the input.
//! A counting allocator measures the second claim.

mod common;

use std::alloc::{GlobalAlloc, Layout as AllocLayout, System};
use std::cell::Cell;

use ggufy_gguf::{Gguf, Value};

struct Counting;

// Per thread, because the test harness runs tests in parallel. Const-initialised cells need no
// allocation or destructor, so using them inside the allocator is sound.
thread_local! {
    // Signed: a block freed here may have been allocated on another thread.
    static LIVE: Cell<isize> = const { Cell::new(0) };
    static PEAK: Cell<isize> = const { Cell::new(0) };
}

// SAFETY: forwards every call to the system allocator unchanged; only counts bytes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: AllocLayout) -> *mut u8 {
        let _ = LIVE.try_with(|live| {
            let now = live.get().wrapping_add(l.size() as isize);
            live.set(now);
            let _ = PEAK.try_with(|p| p.set(p.get().max(now)));
        });
        // SAFETY: same layout contract as the caller's.
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: AllocLayout) {
        let _ = LIVE.try_with(|live| live.set(live.get().wrapping_sub(l.size() as isize)));
        // SAFETY: `p` came from `alloc` with this layout.
        unsafe { System.dealloc(p, l) }
    }
}

#[global_allocator]
static A: Counting = Counting;

/// xorshift64*: deterministic, so a failure is reproducible from its iteration number.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Touches everything a caller would: every value, every array element, every tensor's data.
/// Returns the file's declared alignment: a rewrite plan pads its header to it.
fn exercise(bytes: &[u8]) -> usize {
    let Ok(f) = Gguf::from_bytes(bytes) else {
        return 0;
    };
    let mut n = 0;
    for (_, v) in f.metadata() {
        if let Value::Array(a) = v {
            n += a.iter().count();
            let _ = a.to_owned_array();
        }
        let _ = v.to_owned_value();
    }
    for t in f.tensors() {
        n += f.tensor_data(t).map_or(0, |d| d.len());
    }
    std::hint::black_box(n);
    let _ = f.to_write_plan();
    f.layout().alignment as usize
}

fn mutate(bytes: &[u8], header_len: usize, iterations: usize, seed: u64) {
    let mut rng = Rng(seed);
    let mut buf = bytes.to_vec();
    for i in 0..iterations {
        buf.clear();
        buf.extend_from_slice(bytes);
        let input: &[u8] = match i % 4 {
            _ if bytes.is_empty() || i % 4 == 0 => &bytes[..rng.below(bytes.len() + 1)],
            _ => {
                // Flip 1-8 bytes, mostly in the header where every byte is a count or a length.
                for _ in 0..1 + rng.below(8) {
                    let at = if rng.below(8) == 0 {
                        rng.below(buf.len())
                    } else {
                        rng.below(header_len.min(buf.len()))
                    };
                    buf[at] = match rng.below(4) {
                        0 => 0xFF,
                        1 => 0,
                        _ => rng.next() as u8,
                    };
                }
                &buf[..]
            }
        };
        let before = LIVE.with(Cell::get);
        PEAK.with(|p| p.set(before));
        let alignment = exercise(input);
        let used = PEAK.with(Cell::get).wrapping_sub(before).max(0) as usize;
        // Owned copies of all metadata can take a few times the header bytes; never more.
        let bound = 8 * input.len() + (1 << 16) + 2 * alignment;
        assert!(
            used <= bound,
            "iteration {i} (seed {seed}): {used} bytes allocated for a {}-byte input",
            input.len()
        );
    }
}

#[test]
fn no_panic_and_bounded_memory_on_mutated_fixtures() {
    let mut files = common::gguf_files(&common::fixtures().join("gguf"));
    files.retain(|p| std::fs::metadata(p).unwrap().len() < 64 * 1024);
    files.extend(common::gguf_files(&common::fixtures().join("malformed")));
    assert!(files.len() > 70);
    let mut total = 0;
    for (k, p) in files.iter().enumerate() {
        let bytes = std::fs::read(p).unwrap();
        let header_len = Gguf::from_bytes(&bytes[..])
            .map(|f| f.layout().data_offset as usize)
            .unwrap_or(bytes.len())
            .max(24);
        let n = if bytes.len() > 1024 { 20_000 } else { 1_000 };
        mutate(&bytes, header_len, n, 0x9E37_79B9_7F4A_7C15 ^ k as u64);
        total += n;
    }
    assert!(total >= 50_000);
}

/// The tiny model's header (with its 288-token vocabulary) mutated in place; its data section
/// is left alone so each iteration stays cheap.
#[test]
fn no_panic_on_mutated_model_headers() {
    let bytes =
        std::fs::read(common::fixtures().join("gguf/tiny-llama-q4_k_m.llamacpp.gguf")).unwrap();
    let header_len = Gguf::from_bytes(&bytes[..]).unwrap().layout().data_offset as usize;
    mutate(&bytes, header_len, 3_000, 7);
}
