//! `ggufy-chat`: renders a model's chat template (`tokenizer.chat_template`, Jinja) into the
//! prompt text, as llama.cpp's `--jinja` and transformers' `apply_chat_template` do.
//!
//! A chat template is code from a stranger's file (CVE-2024-34359 ran one with full Python
//! access), so it runs in a sandbox: minijinja has no attribute access beyond the data given to
//! it, no loader (no `include`, `import` or `extends` of anything), and here every render is
//! bounded: template size, instructions executed (fuel), recursion depth, output size and
//! wall-clock time.

use std::io::Write;

use minijinja::{Environment, Error as JinjaError, ErrorKind, Value};

/// Why a template could not be rendered.
#[derive(Debug, thiserror::Error)]
pub enum ChatError {
    /// The template is larger than [`Limits::max_template_bytes`].
    #[error("the chat template is {size} bytes, more than the limit of {limit}")]
    TemplateTooLarge {
        /// Its size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// The template does not parse.
    #[error("the chat template does not parse: {0}")]
    Syntax(String),
    /// Rendering failed: the template raised an error, ran out of fuel, recursed too deeply or
    /// used something the sandbox does not offer.
    #[error("rendering the chat template failed: {0}")]
    Render(String),
    /// The output grew past [`Limits::max_output_bytes`].
    #[error("the chat template produced more than {0} bytes")]
    OutputTooLarge(usize),
    /// Rendering took longer than [`Limits::time`] (some single operations, such as printing
    /// a huge repeated list, run below what fuel counts).
    #[error("rendering the chat template took longer than {0:?}")]
    Timeout(std::time::Duration),
}

/// Bounds on one render.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Largest template source accepted.
    pub max_template_bytes: usize,
    /// Largest rendered prompt.
    pub max_output_bytes: usize,
    /// Instructions the template may execute (minijinja's fuel).
    pub fuel: u64,
    /// Deepest macro/call nesting.
    pub recursion: usize,
    /// Wall-clock time a render may take. Past it the caller gets [`ChatError::Timeout`]; the
    /// abandoned render keeps a thread busy until it ends or the process exits.
    pub time: std::time::Duration,
}

impl Default for Limits {
    /// Room for any real template (the largest in use are tens of KB and render in thousands
    /// of instructions per message), far below what could exhaust a machine.
    fn default() -> Limits {
        Limits {
            max_template_bytes: 1 << 20,
            max_output_bytes: 4 << 20,
            fuel: 5_000_000,
            recursion: 100,
            time: std::time::Duration::from_secs(5),
        }
    }
}

/// One chat message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    /// `system`, `user`, `assistant`, …
    pub role: String,
    /// The text.
    pub content: String,
}

impl Message {
    /// A message with this role and text.
    pub fn new(role: &str, content: &str) -> Message {
        Message {
            role: role.into(),
            content: content.into(),
        }
    }
}

/// The variables a template sees besides the messages.
#[derive(Clone, Debug, Default)]
pub struct RenderOptions {
    /// End with the assistant's turn opened (what generation wants).
    pub add_generation_prompt: bool,
    /// The BOS token's text (templates often print it themselves).
    pub bos_token: String,
    /// The EOS token's text.
    pub eos_token: String,
    /// The clock `strftime_now` reads, in seconds since 1970 (UTC); None: the system clock. Set
    /// it to make a date-printing template (Llama 3.x) render reproducibly.
    pub now: Option<u64>,
}

/// Renders `template` for `messages`, on a worker thread so that [`Limits::time`] holds.
pub fn render(
    template: &str,
    messages: &[Message],
    opts: &RenderOptions,
    limits: &Limits,
) -> Result<String, ChatError> {
    if template.len() > limits.max_template_bytes {
        return Err(ChatError::TemplateTooLarge {
            size: template.len(),
            limit: limits.max_template_bytes,
        });
    }
    let (template, messages, opts, limits) = (
        template.to_owned(),
        messages.to_vec(),
        opts.clone(),
        *limits,
    );
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("chat-template".into())
        .spawn(move || {
            let _ = tx.send(render_here(&template, &messages, &opts, &limits));
        })
        .map_err(|e| ChatError::Render(format!("cannot start the render thread: {e}")))?;
    match rx.recv_timeout(limits.time) {
        Ok(r) => r,
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => Err(ChatError::Timeout(limits.time)),
        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
            Err(ChatError::Render("the render thread failed".into()))
        }
    }
}

/// [`render`] on the calling thread, without the time limit.
fn render_here(
    template: &str,
    messages: &[Message],
    opts: &RenderOptions,
    limits: &Limits,
) -> Result<String, ChatError> {
    let env = environment(limits, opts.now);
    let tmpl = env
        .template_from_str(template)
        .map_err(|e| ChatError::Syntax(describe(&e)))?;
    let msgs: Vec<serde_json::Value> = messages
        .iter()
        .map(|m| serde_json::json!({"role": m.role, "content": m.content}))
        .collect();
    let ctx = Value::from_serialize(serde_json::json!({
        "messages": msgs,
        "add_generation_prompt": opts.add_generation_prompt,
        "bos_token": opts.bos_token,
        "eos_token": opts.eos_token,
    }));
    let mut out = Capped {
        buf: Vec::new(),
        limit: limits.max_output_bytes,
        overflowed: false,
    };
    match tmpl.render_captured_to(ctx, &mut out) {
        Ok(_) => {}
        Err(_) if out.overflowed => return Err(ChatError::OutputTooLarge(out.limit)),
        Err(e) => return Err(ChatError::Render(describe(&e))),
    }
    String::from_utf8(out.buf).map_err(|_| ChatError::Render("output is not UTF-8".into()))
}

/// The sandboxed environment: Jinja's builtins as transformers configures them (trim_blocks,
/// lstrip_blocks, loop controls), Python's string and dict methods, the two functions HF
/// templates call, and the limits. No loader: nothing outside the template can be reached.
fn environment(limits: &Limits, now: Option<u64>) -> Environment<'static> {
    let mut env = Environment::new();
    env.set_trim_blocks(true);
    env.set_lstrip_blocks(true);
    env.set_fuel(Some(limits.fuel));
    env.set_recursion_limit(limits.recursion);
    env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
    env.add_function(
        "raise_exception",
        |msg: String| -> Result<Value, JinjaError> {
            Err(JinjaError::new(ErrorKind::InvalidOperation, msg))
        },
    );
    env.add_function(
        "strftime_now",
        move |fmt: String| -> Result<String, JinjaError> {
            let secs = now.unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_secs())
                    .unwrap_or(0)
            });
            Ok(format_time(secs, &fmt))
        },
    );
    env
}

/// The error with its cause chain, on one line.
fn describe(e: &JinjaError) -> String {
    let mut s = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(c) = src {
        s.push_str(": ");
        s.push_str(&c.to_string());
        src = c.source();
    }
    s
}

/// A writer that refuses to grow past `limit`.
struct Capped {
    buf: Vec<u8>,
    limit: usize,
    overflowed: bool,
}

impl Write for Capped {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        if self.buf.len() + b.len() > self.limit {
            self.overflowed = true;
            return Err(std::io::Error::other("chat template output limit"));
        }
        self.buf.extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A UTC time in a `strftime` format: the subset templates use (`%Y %m %d %B %b %H %M %S %%`),
/// for templates that print the current date (Llama 3.x).
fn format_time(secs: u64, fmt: &str) -> String {
    const MONTHS: [&str; 12] = [
        "January",
        "February",
        "March",
        "April",
        "May",
        "June",
        "July",
        "August",
        "September",
        "October",
        "November",
        "December",
    ];
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let mut out = String::new();
    let mut chars = fmt.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('Y') => out.push_str(&year.to_string()),
            Some('m') => out.push_str(&format!("{month:02}")),
            Some('d') => out.push_str(&format!("{day:02}")),
            Some('B') => out.push_str(MONTHS[(month - 1) as usize]),
            Some('b') => out.push_str(&MONTHS[(month - 1) as usize][..3]),
            Some('H') => out.push_str(&format!("{:02}", rem / 3600)),
            Some('M') => out.push_str(&format!("{:02}", rem / 60 % 60)),
            Some('S') => out.push_str(&format!("{:02}", rem % 60)),
            Some('%') => out.push('%'),
            Some(other) => {
                out.push('%');
                out.push(other);
            }
            None => out.push('%'),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_format_like_strftime() {
        // 2024-07-23 13:05:09 UTC.
        assert_eq!(
            format_time(1_721_739_909, "%d %b %Y %H:%M:%S %B %m %%"),
            "23 Jul 2024 13:05:09 July 07 %"
        );
        assert_eq!(format_time(0, "%Y-%m-%d"), "1970-01-01");
        assert_eq!(format_time(951_782_400, "%Y-%m-%d"), "2000-02-29");
    }
}
