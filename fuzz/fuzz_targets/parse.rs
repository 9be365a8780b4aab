//! Any bytes as a webhook body: the parser answers an event or a rejection, never
//! panics, and what it accepts the rest of the pipeline can take.
#![no_main]

use innohook::event::parse;
use innohook::event::tracking::{StatusUpdate, Tracked, track};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match parse(data) {
        Err(rejection) => {
            // A person can act on every 400: it names its code and says something.
            assert!(!rejection.code.as_str().is_empty());
            assert!(!rejection.message.trim().is_empty(), "{rejection:?}");
        }
        Ok(accepted) => {
            // Accepted input is UTF-8 JSON: it is stored whole and handed to sinks as it
            // came. (Whole, but not always a serde_json value: a lone surrogate escape in
            // an undocumented field is kept as sent, by design.)
            assert!(
                std::str::from_utf8(data).is_ok(),
                "accepted bytes that are not UTF-8"
            );
            assert!(
                serde_json::from_slice::<serde::de::IgnoredAny>(data).is_ok(),
                "accepted something that is not JSON"
            );
            // The same bytes parse the same way.
            let again = parse(data).expect("accepted once, accepted again");
            assert_eq!(accepted.warnings.len(), again.warnings.len());
            if let Some(update) = StatusUpdate::from_accepted(&accepted) {
                assert!(!update.message_id().trim().is_empty());
                let now = chrono::DateTime::from_timestamp(1_800_000_000, 0).expect("in range");
                let Tracked::Changed(m) = track(None, &update, now) else {
                    panic!("a new message cannot be a duplicate");
                };
                assert_eq!(track(Some(&m), &update, now), Tracked::Duplicate);
            }
        }
    }
});
