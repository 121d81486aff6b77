//! `prefetch` and `release` change which of the file's pages are mapped in, and nothing else:
//! measured with the kernel's own account of the mapping (`/proc/self/smaps`, Linux), and the
//! tensor bytes still equal the file's afterwards. Slices from elsewhere are ignored.

use ggufy_gguf::{Gguf, GgufFile};

const PATH: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../fixtures/gguf/tiny-llama-f16.gguf"
);

/// KiB of `PATH`'s mapping resident in this process, from `/proc/self/smaps`.
#[cfg(target_os = "linux")]
fn resident_kib() -> u64 {
    let path = std::fs::canonicalize(PATH).unwrap();
    let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
    let mut in_file = false;
    let mut kib = 0;
    for line in smaps.lines() {
        let first = line.split_whitespace().next().unwrap_or("");
        if first.contains('-') && first.chars().all(|c| c.is_ascii_hexdigit() || c == '-') {
            // A mapping's header line: address range, permissions, offset, device, inode, path.
            in_file = line.ends_with(path.to_str().unwrap());
        } else if in_file && let Some(v) = line.strip_prefix("Rss:") {
            kib += v
                .trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<u64>()
                .unwrap();
        }
    }
    kib
}

#[test]
fn residency_advice_maps_and_drops_pages_and_keeps_the_data() {
    let file = GgufFile::open(PATH).unwrap();
    let largest = file
        .tensors()
        .iter()
        .max_by_key(|t| file.tensor_data(t).unwrap().len())
        .unwrap();
    let bytes = file.tensor_data(largest).unwrap();
    let kib = bytes.len() as u64 / 1024;
    assert!(
        kib >= 64,
        "the fixture's largest tensor is too small to measure"
    );

    #[cfg(target_os = "linux")]
    {
        let before = resident_kib();
        file.prefetch(bytes);
        let mapped = resident_kib();
        assert!(
            mapped >= before + kib - 8,
            "prefetch: {before} -> {mapped} KiB"
        );
        file.release(bytes);
        let dropped = resident_kib();
        assert!(
            dropped + kib - 8 <= mapped,
            "release: {mapped} -> {dropped} KiB"
        );
    }

    let foreign = vec![7u8; 10_000];
    file.release(&foreign);
    file.prefetch(&foreign);
    file.prefetch(&bytes[bytes.len()..]);
    // The same file parsed from a plain read: every tensor's bytes agree.
    let copy = Gguf::from_bytes(std::fs::read(PATH).unwrap()).unwrap();
    for (t, c) in file.tensors().iter().zip(copy.tensors()) {
        assert_eq!(file.tensor_data(t), copy.tensor_data(c), "{}", t.name);
    }
}
