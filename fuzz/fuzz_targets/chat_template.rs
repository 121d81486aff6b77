//! Any text as a chat template, rendered for a short conversation: must never panic, and every
//! render ends (fuel, recursion, output and time limits) with text or a typed error.
//!
//!     cargo +nightly fuzz run chat_template fixtures/chat/templates -- -max_len=8192
#![no_main]

use ggufy_chat::{Limits, Message, RenderOptions, render};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(template) = std::str::from_utf8(data) else {
        return;
    };
    let messages = [
        Message::new("system", "Be brief."),
        Message::new("user", "Hi"),
        Message::new("assistant", "Hello!"),
        Message::new("user", "2+2?"),
    ];
    let opts = RenderOptions {
        add_generation_prompt: true,
        bos_token: "<s>".into(),
        eos_token: "</s>".into(),
        now: Some(0),
    };
    // Smaller limits than the CLI's keep each run short.
    let limits = Limits {
        fuel: 200_000,
        max_output_bytes: 1 << 16,
        time: std::time::Duration::from_secs(2),
        ..Limits::default()
    };
    if let Ok(out) = render(template, &messages, &opts, &limits) {
        assert!(out.len() <= limits.max_output_bytes);
    }
});
