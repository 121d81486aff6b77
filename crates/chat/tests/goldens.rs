//! Real chat templates (Llama 3.x, Qwen 2.5/3, Phi-3.5, Gemma 2, Mistral, DeepSeek R1, Granite,
//! Command R+, gpt-oss …; `fixtures/chat/templates/`) rendered as transformers renders them
//! (Jinja2's sandbox: `fixtures/make_chat_goldens.py` wrote `fixtures/chat/goldens.json`): the
//! same text, or an error where the template raises one. And the sandbox holds against
//! templates written to escape or exhaust it.

use std::path::PathBuf;

use ggufy_chat::{ChatError, Limits, Message, RenderOptions, render};

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/chat")
}

fn case_messages(case: &str) -> Vec<Message> {
    match case {
        "user" => vec![Message::new("user", "Hello! What is 2 + 2?")],
        "system-user" => vec![
            Message::new("system", "You are a terse assistant."),
            Message::new("user", "Name a prime number."),
        ],
        "multi-turn" => vec![
            Message::new("system", "Answer in French."),
            Message::new("user", "  Hi there  "),
            Message::new("assistant", "Bonjour !"),
            Message::new("user", "How are you?\nFine?"),
        ],
        other => panic!("unknown case {other}"),
    }
}

#[test]
fn real_templates_render_as_transformers_renders_them() {
    let goldens: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixtures().join("goldens.json")).unwrap())
            .unwrap();
    let goldens = goldens.as_array().unwrap();
    assert!(goldens.len() >= 100);
    let mut failures = Vec::new();
    for g in goldens {
        let name = g["template"].as_str().unwrap();
        let case = g["case"].as_str().unwrap();
        let source = std::fs::read_to_string(fixtures().join("templates").join(name)).unwrap();
        let opts = RenderOptions {
            add_generation_prompt: g["add_generation_prompt"].as_bool().unwrap(),
            bos_token: "<s>".into(),
            eos_token: "</s>".into(),
            now: Some(1_721_739_909),
        };
        let got = render(&source, &case_messages(case), &opts, &Limits::default());
        let label = format!("{name} / {case} / agp={}", opts.add_generation_prompt);
        match (g.get("output").and_then(|o| o.as_str()), got) {
            (Some(want), Ok(got)) if want == got => {}
            (Some(want), Ok(got)) => {
                failures.push(format!("{label}:\n want {want:?}\n  got {got:?}"))
            }
            (Some(_), Err(e)) => failures.push(format!("{label}: {e}")),
            (None, Ok(got)) => failures.push(format!("{label}: expected an error, got {got:?}")),
            (None, Err(e)) => {
                let want = g["error"].as_str().unwrap();
                if !e.to_string().contains(want) {
                    failures.push(format!("{label}: error {e} does not say {want:?}"));
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {}:\n{}",
        failures.len(),
        goldens.len(),
        failures.join("\n")
    );
}

fn render_hostile(source: &str) -> Result<String, ChatError> {
    render(
        source,
        &[Message::new("user", "hi")],
        &RenderOptions::default(),
        &Limits::default(),
    )
}

#[test]
fn python_internals_are_out_of_reach() {
    // CVE-2024-34359's payload class: walk from a string to Python's classes and os.popen.
    for probe in [
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{{ messages.__class__ }}",
        "{{ self.__init__.__globals__ }}",
        "{{ cycler.__init__.__globals__.os.popen('id').read() }}",
        "{{ lipsum.__globals__['os'].popen('id').read() }}",
        "{{ config.items() }}",
    ] {
        match render_hostile(probe) {
            Ok(out) => assert!(
                !out.contains("uid=") && !out.contains("class"),
                "{probe} rendered {out:?}"
            ),
            Err(ChatError::Render(_)) => {}
            Err(e) => panic!("{probe}: unexpected {e}"),
        }
    }
}

#[test]
fn nothing_outside_the_template_is_loaded() {
    for probe in [
        "{% include '/etc/passwd' %}",
        "{% import 'x.html' as x %}",
        "{% extends '../../secrets' %}",
    ] {
        assert!(
            matches!(render_hostile(probe), Err(ChatError::Render(_))),
            "{probe}"
        );
    }
}

#[test]
fn exhausting_templates_stop_with_a_clear_error() {
    // Endless work: fuel runs out.
    let e = render_hostile(
        "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
    )
    .unwrap_err();
    assert!(matches!(e, ChatError::Render(_)), "{e}");
    // Endless recursion: the recursion limit.
    let e = render_hostile("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}").unwrap_err();
    assert!(matches!(e, ChatError::Render(_)), "{e}");
    // A flood of output: the output cap (small here to keep the test quick).
    let limits = Limits {
        max_output_bytes: 1 << 16,
        ..Limits::default()
    };
    let e = render(
        "{% for i in range(100000) %}{{ 'xxxxxxxxxxxxxxxx' }}{% endfor %}",
        &[],
        &RenderOptions::default(),
        &limits,
    )
    .unwrap_err();
    assert!(matches!(e, ChatError::OutputTooLarge(_)), "{e}");
    // A huge template is refused before parsing.
    let big = "x".repeat(Limits::default().max_template_bytes + 1);
    assert!(matches!(
        render_hostile(&big),
        Err(ChatError::TemplateTooLarge { .. })
    ));
    // A syntax error names itself.
    assert!(matches!(
        render_hostile("{% for %}"),
        Err(ChatError::Syntax(_))
    ));
}

#[test]
fn raise_exception_reaches_the_caller() {
    let e =
        render_hostile("{{ raise_exception('Conversation roles must alternate') }}").unwrap_err();
    assert!(
        e.to_string().contains("Conversation roles must alternate"),
        "{e}"
    );
}

#[test]
fn single_huge_values_are_refused_or_time_out() {
    // One operation that would build gigabytes or spin for minutes at once, below what fuel
    // counts: refused, capped, or stopped by the time limit.
    let limits = Limits {
        time: std::time::Duration::from_millis(500),
        ..Limits::default()
    };
    for probe in [
        "{{ 'x' * 4000000000 }}",
        "{{ ('x' * 100000) * 100000 }}",
        "{{ range(4000000000) | list | length }}",
        "{{ [0] * 4000000000 }}",
    ] {
        let t = std::time::Instant::now();
        let r = render(probe, &[], &RenderOptions::default(), &limits);
        assert!(r.is_err(), "{probe}");
        assert!(t.elapsed() < std::time::Duration::from_secs(3), "{probe}");
    }
}
