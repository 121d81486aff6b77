//! `release` and `prefetch` only change which pages are resident: tensor bytes read the same
//! afterwards, and slices from elsewhere (or past the map) are ignored without a panic.

use ggufy_gguf::GgufFile;

#[test]
fn residency_advice_keeps_the_data() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../fixtures/gguf/tiny-llama-f16.gguf"
    );
    let file = GgufFile::open(path).unwrap();
    let before: Vec<Vec<u8>> = file
        .tensors()
        .iter()
        .map(|t| file.tensor_data(t).unwrap().to_vec())
        .collect();
    let foreign = vec![7u8; 10_000];
    for t in file.tensors() {
        let bytes = file.tensor_data(t).unwrap();
        file.release(bytes);
        file.prefetch(bytes);
        file.release(&bytes[..0]);
        file.prefetch(&bytes[bytes.len()..]);
    }
    file.release(&foreign);
    file.prefetch(&foreign);
    for (t, want) in file.tensors().iter().zip(&before) {
        assert_eq!(file.tensor_data(t).unwrap(), &want[..], "{}", t.name);
    }
}
