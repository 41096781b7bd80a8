#![no_main]
//! Config text is operator input and reloaded on SIGHUP: any text either loads or is
//! refused with an error, never a panic.

use std::panic;
use std::sync::Once;

use cycast::config::Config;
use libfuzzer_sys::fuzz_target;

/// hcl-rs's number arithmetic panics on some input (integer `% 0`, overflow, non-finite `/`);
/// `from_hcl_str` catches that and answers an error, but libFuzzer's panic hook would abort
/// first. Those panics are let through quietly; any other still aborts.
fn let_caught_hcl_panics_through() {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let fuzzer_hook = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            let known = info.location().is_some_and(|l| {
                l.file().contains("hcl-primitives") && l.file().ends_with("number.rs")
            });
            if !known {
                fuzzer_hook(info);
            }
        }));
    });
}

fuzz_target!(|data: &[u8]| {
    let_caught_hcl_panics_through();
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(config) = Config::from_hcl_str(text) else {
        return;
    };
    let _ = config.max_listeners();
    let _ = config.ring_bytes();
    let _ = config.header_timeout();
    let _ = config.source_timeout();
    let _ = config.legacy_keys_in_use();
    // What --check-config prints must load again.
    let shown = config.to_redacted_hcl();
    if let Err(e) = Config::from_hcl_str(&shown) {
        panic!("redacted config does not load again: {e}\n{shown}");
    }
});
