//! Errors whose useful part is in their sources, shown whole.

/// An error and its causes on one line: tonic's transport error says only "transport error", and the
/// reason an operator needs ("Connection refused") is in its sources.
pub fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}
