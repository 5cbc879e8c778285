//! Silencing the panics a test plans, so that thousands of them do not
//! flood the output while any other panic is reported as usual.

/// Silences panics whose message is `planned`; restores the previous hook
/// when dropped.
pub struct QuietPanics;

impl QuietPanics {
    pub fn install(planned: &'static str) -> Self {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let payload = info.payload();
            let text = payload
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| payload.downcast_ref::<&str>().copied());
            if text != Some(planned) {
                previous(info);
            }
        }));
        Self
    }
}

impl Drop for QuietPanics {
    fn drop(&mut self) {
        // The hook cannot change while a panic unwinds; the process is
        // failing then anyway.
        if !std::thread::panicking() {
            let _ = std::panic::take_hook();
        }
    }
}

/// Silences panics whose message is `planned` for the rest of the process
/// (for tests that share it with others running at the same time, where a
/// restored hook could end the silence of another).
pub fn quiet_for_good(planned: &'static str) {
    std::mem::forget(QuietPanics::install(planned));
}
