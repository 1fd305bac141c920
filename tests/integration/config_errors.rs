//! Pipeline files with mistakes fail with the file, the line and the key.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use voxpipe::config::{ConfigError, Override};
use voxpipe::pipeline_file::{load_pipeline, parse_pipeline};
use voxpipe::processors::ProcessorRegistry;

fn errors_of(text: &str) -> Vec<String> {
    match parse_pipeline(Path::new("p.toml"), text, &ProcessorRegistry::builtin()) {
        Ok(_) => panic!("expected errors for:\n{text}"),
        Err(errors) => errors.0.iter().map(ToString::to_string).collect(),
    }
}

const HEADER: &str = "[pipeline]\nname = \"t\"\n\n";

#[test]
fn a_misspelt_key_names_file_line_and_key() {
    let errors = errors_of(&format!(
        "{HEADER}[[processor]]\ntype = \"gain\"\ngain_dbb = -6\n"
    ));
    assert_eq!(
        errors,
        [
            "p.toml:6:1: key `processor.0.gain_dbb`: unknown key `gain_dbb`, expected `gain_db` or `audio`"
        ]
    );
}

#[test]
fn a_wrong_type_names_file_line_and_key() {
    let errors = errors_of(&format!(
        "{HEADER}[[processor]]\ntype = \"gain\"\ngain_db = \"loud\"\n"
    ));
    assert_eq!(errors.len(), 1);
    assert!(
        errors[0]
            .starts_with("p.toml:6:11: key `processor.0.gain_db`: invalid type: string \"loud\""),
        "{}",
        errors[0]
    );
}

#[test]
fn unknown_processor_types_and_missing_keys_are_named() {
    let errors = errors_of(&format!(
        "{HEADER}[[processor]]\ntype = \"vadd\"\n\n[[processor]]\ntype = \"gain\"\n\n[[processor]]\naudio = \"input\"\n"
    ));
    assert_eq!(errors.len(), 3, "{errors:#?}");
    assert!(errors[0].starts_with(
        "p.toml:5:8: key `processor.0.type`: unknown processor type `vadd`; known types: "
    ));
    assert!(
        errors[1].contains("key `processor.1.gain_db`: missing required key `gain_db`"),
        "{}",
        errors[1]
    );
    assert!(
        errors[2].contains("key `processor.2.type`: missing required key `type`"),
        "{}",
        errors[2]
    );
}

#[test]
fn sections_are_checked_too() {
    let errors = errors_of("[pipeline]\nnam = \"t\"\n");
    assert!(
        errors[0].starts_with("p.toml:2:1: key `pipeline.nam`: unknown key `nam`"),
        "{}",
        errors[0]
    );
    let errors = errors_of("[pipeline]\nname = \"t\"\nsample_rate = 44100\n");
    assert!(
        errors[0]
            .starts_with("p.toml:3:15: key `pipeline.sample_rate`: unsupported sample rate 44100")
    );
    let errors = errors_of("[pipeline]\nname = \"t\"\n[nonsense]\n");
    assert!(
        errors[0].contains("key `nonsense`: unknown key `nonsense`"),
        "{}",
        errors[0]
    );
    let errors = errors_of("[[processor]]\ntype = \"parrot\"\n");
    assert!(
        errors[0].contains("missing required key `pipeline`"),
        "{}",
        errors[0]
    );
}

#[test]
fn syntax_errors_name_the_line() {
    let errors = errors_of("[pipeline\nname = \"t\"\n");
    assert!(errors[0].starts_with("p.toml:1:"), "{}", errors[0]);
}

#[test]
fn processor_names_default_to_the_type_and_repeats_are_numbered() {
    let text = format!(
        "{HEADER}[[processor]]\ntype = \"passthrough\"\n[[processor]]\ntype = \"passthrough\"\n[[processor]]\ntype = \"gain\"\nname = \"mic\"\ngain_db = 1\n"
    );
    let config = parse_pipeline(Path::new("p.toml"), &text, &ProcessorRegistry::builtin()).unwrap();
    let names: Vec<_> = config.processors.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["passthrough", "passthrough#2", "mic"]);
    assert_eq!(config.pipeline.sample_rate.hz(), 16_000);
    assert!(config.pipeline.allow_interruptions);
}

fn write_pipeline(text: &str) -> tempfile::NamedTempFile {
    let file = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
    std::fs::write(file.path(), text).unwrap();
    file
}

fn set(spec: &str) -> Override {
    spec.parse().unwrap()
}

#[test]
fn overrides_change_values_by_dotted_path() {
    let file = write_pipeline(&format!(
        "{HEADER}[[processor]]\ntype = \"gain\"\ngain_db = 3\n"
    ));
    let config = load_pipeline(
        file.path(),
        &[
            set("processor.0.gain_db=-6"),
            set("pipeline.sample_rate=8000"),
        ],
        &ProcessorRegistry::builtin(),
    )
    .unwrap();
    assert_eq!(config.pipeline.sample_rate.hz(), 8_000);
    assert!(format!("{:?}", config.processors[0].factory).contains("gain_db: -6.0"));
}

#[test]
fn an_override_of_an_unknown_path_is_an_error_naming_the_override() {
    let file = write_pipeline(&format!("{HEADER}[[processor]]\ntype = \"parrot\"\n"));
    let registry = ProcessorRegistry::builtin();
    for (spec, expected) in [
        ("processor.0.max_seconds=3", "unknown key `max_seconds`"),
        ("processor.1.max_secs=3", "index 1 is past the end"),
        ("nonsense.key=1", "unknown key `nonsense`"),
        ("pipeline.allow_interruptions=maybe", "expected a boolean"),
    ] {
        let errors = load_pipeline(file.path(), &[set(spec)], &registry).unwrap_err();
        let ConfigError::Override {
            spec: named,
            message,
        } = &errors.0[0]
        else {
            panic!("{spec}: {errors}");
        };
        assert_eq!(named, spec);
        assert!(message.contains(expected), "{spec}: {message}");
    }
}

#[test]
fn every_shipped_pipeline_is_valid() {
    let registry = ProcessorRegistry::builtin();
    let mut checked = 0;
    for entry in std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/pipelines")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            if let Err(errors) = load_pipeline(&path, &[], &registry) {
                panic!("{errors}");
            }
            checked += 1;
        }
    }
    assert!(checked > 0);
}

#[test]
fn vad_and_interruption_values_out_of_range_name_their_key() {
    let errors = errors_of(&format!(
        "{HEADER}[interruption]\nmin_secs = -1\n\n[[processor]]\ntype = \"vad\"\nengine = \"webrtc\"\n\n[[processor]]\ntype = \"vad\"\nconfidence = 1.5\n"
    ));
    assert_eq!(errors.len(), 3, "{errors:#?}");
    assert!(
        errors[0].contains("key `interruption.min_secs`: expected seconds from 0 to 10, not -1"),
        "{}",
        errors[0]
    );
    assert!(
        errors[1].contains(
            "key `processor.0.engine`: unknown variant `webrtc`, expected `silero` or `earshot`"
        ),
        "{}",
        errors[1]
    );
    assert!(
        errors[2].contains("key `processor.1.confidence`: expected a value from 0 to 1, not 1.5"),
        "{}",
        errors[2]
    );
}

#[test]
fn services_are_chosen_by_provider_and_their_keys_checked_by_line() {
    let errors = errors_of(&format!(
        "{HEADER}[[processor]]\ntype = \"tts\"\nprovider = \"acme\"\n\n[[processor]]\ntype = \"llm\"\n\n[[processor]]\ntype = \"llm\"\nprovider = \"openai\"\nmodel = \"m\"\ntemprature = 0.5\n"
    ));
    assert_eq!(errors.len(), 3, "{errors:#?}");
    assert!(
        errors[0].starts_with("p.toml:6:12: key `processor.0.provider`: unknown provider `acme` for `tts`; known providers: `cartesia`, `elevenlabs`, `openai`"),
        "{}",
        errors[0]
    );
    assert!(
        errors[1].contains(
            "key `processor.1.provider`: missing required key `provider`; `llm` providers: `openai`"
        ),
        "{}",
        errors[1]
    );
    assert!(
        errors[2]
            .starts_with("p.toml:15:1: key `processor.2.temprature`: unknown key `temprature`"),
        "{}",
        errors[2]
    );
}

#[test]
fn provider_settings_can_be_overridden_by_path() {
    let file = write_pipeline(&format!(
        "{HEADER}[[processor]]\ntype = \"llm\"\nprovider = \"openai\"\nmodel = \"m\"\n"
    ));
    let config = load_pipeline(
        file.path(),
        &[set("processor.0.base_url=http://127.0.0.1:9/v1")],
        &ProcessorRegistry::builtin(),
    )
    .unwrap();
    assert!(format!("{:?}", config.processors[0].factory).contains("http://127.0.0.1:9/v1"));
    let errors = load_pipeline(
        file.path(),
        &[set("processor.0.provider=acme")],
        &ProcessorRegistry::builtin(),
    )
    .unwrap_err();
    assert!(
        errors.to_string().contains("unknown provider `acme`"),
        "{errors}"
    );
}

#[test]
fn a_storage_url_that_cannot_work_names_file_line_and_key() {
    let errors = errors_of(&format!(
        "{HEADER}[storage]\nregion = \"eu-west-1\"\nurl = \"gs://calls/x\"\n"
    ));
    assert_eq!(errors.len(), 1, "{errors:#?}");
    assert!(
        errors[0].starts_with("p.toml:6:7: key `storage.url`: `gs://calls/x`: expected"),
        "{}",
        errors[0]
    );
    let errors = errors_of(&format!("{HEADER}[storage]\nurl = \"s3://Calls\"\n"));
    assert!(
        errors[0].contains("key `storage.url`") && errors[0].contains("bucket"),
        "{}",
        errors[0]
    );
}

#[test]
fn text_history_bounds_out_of_range_name_their_key() {
    let errors = errors_of(&format!("{HEADER}[text]\nhistory_max_messages = 1\n"));
    assert_eq!(
        errors,
        [
            "p.toml:5:24: key `text.history_max_messages`: expected a whole number from 2 to 1000, not 1"
        ]
    );
    let errors = errors_of(&format!("{HEADER}[text]\nhistory_max_chars = 5000000\n"));
    assert_eq!(
        errors,
        [
            "p.toml:5:21: key `text.history_max_chars`: expected a whole number from 1000 to 1000000, not 5000000"
        ]
    );
}

#[test]
fn side_request_bounds_out_of_range_name_their_key() {
    let llm = "[[processor]]\ntype = \"llm\"\nprovider = \"openai\"\nmodel = \"m\"\n";
    let errors = errors_of(&format!(
        "{HEADER}{llm}\n[processor.reflection]\nmax_tokens = 0\n"
    ));
    assert_eq!(
        errors,
        [
            "p.toml:10:14: key `processor.0.reflection.max_tokens`: expected a whole number from 1 to 100000, not 0"
        ]
    );
    let errors = errors_of(&format!(
        "{HEADER}{llm}\n[processor.reflection]\nmax_tokens = -1\n"
    ));
    assert_eq!(
        errors,
        [
            "p.toml:10:14: key `processor.0.reflection.max_tokens`: expected a whole number from 1 to 100000, not -1"
        ]
    );
    let errors = errors_of(&format!(
        "{HEADER}{llm}\n[processor.router]\ntimeout_secs = 600\n\n[[processor.agents]]\nname = \"a\"\ndescription = \"d\"\nsystem_prompt = \"s\"\n"
    ));
    assert_eq!(
        errors,
        [
            "p.toml:10:16: key `processor.0.router.timeout_secs`: expected seconds above 0 and at most 120, not 600"
        ]
    );
}

#[test]
fn a_lost_session_grace_shorter_than_the_writers_flush_is_refused() {
    let errors = errors_of(&format!(
        "{HEADER}[context]\nflush_timeout_secs = 60\n\n[outbound]\nfrom = \"+15557654321\"\nlost_session_grace_secs = 45\n"
    ));
    assert_eq!(errors.len(), 1, "{errors:#?}");
    assert!(
        errors[0].starts_with(
            "p.toml:9:1: key `outbound.lost_session_grace_secs`: expected at least 60 s ([context] flush_timeout_secs"
        ),
        "{}",
        errors[0]
    );
}
