//! Ordered metadata with the converter's semantics: setting a key again replaces its value where
//! it stands (a Python dict), so the file's key order matches llama.cpp's converter.

use ggufy_gguf::MetaValue;

/// Metadata in output order.
#[derive(Clone, Debug, Default)]
pub struct Meta {
    entries: Vec<(String, MetaValue)>,
}

impl Meta {
    /// Sets `key`, in place if it exists, else at the end.
    pub fn set(&mut self, key: impl Into<String>, value: MetaValue) {
        let key = key.into();
        match self.entries.iter_mut().find(|(k, _)| *k == key) {
            Some(e) => e.1 = value,
            None => self.entries.push((key, value)),
        }
    }

    /// Sets a u32.
    pub fn u32(&mut self, key: impl Into<String>, v: u32) {
        self.set(key, MetaValue::U32(v));
    }

    /// Sets an f32 (JSON numbers are doubles; GGUF stores these as f32, as gguf-py does).
    pub fn f32(&mut self, key: impl Into<String>, v: f64) {
        self.set(key, MetaValue::F32(v as f32));
    }

    /// Sets a string.
    pub fn string(&mut self, key: impl Into<String>, v: impl Into<String>) {
        self.set(key, MetaValue::String(v.into()));
    }

    /// Sets a bool.
    pub fn bool(&mut self, key: impl Into<String>, v: bool) {
        self.set(key, MetaValue::Bool(v));
    }

    /// Removes `key`.
    pub fn remove(&mut self, key: &str) {
        self.entries.retain(|(k, _)| k != key);
    }

    /// The value of `key`.
    pub fn get(&self, key: &str) -> Option<&MetaValue> {
        self.entries.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// The entries, in order.
    pub fn into_entries(self) -> Vec<(String, MetaValue)> {
        self.entries
    }
}
