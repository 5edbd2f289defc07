//! What the harness prints for people: progress lines on stderr as the shell scripts printed theirs, the end of
//! a log next to an error, and words for a shell to `eval`.

use std::{
    fmt::Display,
    path::Path,
    time::{SystemTime, UNIX_EPOCH},
};

/// A progress line on stderr, stamped with the local time as the shell scripts' `log` does.
pub fn log(message: impl Display) {
    eprintln!("[{}] {message}", local_clock());
}

/// The local time of day, `HH:MM:SS`.
pub fn local_clock() -> String {
    let seconds = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_secs());
    let seconds = libc::time_t::try_from(seconds).unwrap_or_default();
    // SAFETY: `tm` is plain data (its one pointer may be null), and localtime_r writes only into it.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    // SAFETY: both pointers are to live locals; localtime_r is the thread-safe variant.
    let converted = unsafe { !libc::localtime_r(&seconds, &mut tm).is_null() };
    if converted {
        format!("{:02}:{:02}:{:02}", tm.tm_hour, tm.tm_min, tm.tm_sec)
    } else {
        let of_day = seconds.rem_euclid(86_400);
        format!(
            "{:02}:{:02}:{:02}",
            of_day / 3600,
            of_day / 60 % 60,
            of_day % 60
        )
    }
}

/// `text` as one shell word, as bash's `printf %q` would make it safe to `eval`.
pub fn shell_quote(text: &str) -> String {
    let plain = !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-:,=+@%".contains(c));
    if plain {
        text.to_owned()
    } else {
        format!("'{}'", text.replace('\'', r"'\''"))
    }
}

/// The last `count` lines of `text`.
pub fn last_lines(text: &str, count: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(count)..].join("\n")
}

/// Prints the last `count` lines of the log at `path` on stderr, for an error that points at it (nothing when it
/// cannot be read).
pub fn print_tail(path: &Path, count: usize) {
    if let Ok(text) = std::fs::read_to_string(path) {
        eprintln!("{}", last_lines(&text, count));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoted_words_survive_eval() {
        assert_eq!(
            shell_quote("/root/.cache/rktnetes/kind/kubeconfig"),
            "/root/.cache/rktnetes/kind/kubeconfig"
        );
        assert_eq!(shell_quote("/a b/it's"), r"'/a b/it'\''s'");
        assert_eq!(shell_quote(""), "''");
        assert_eq!(shell_quote("$(rm -rf /)"), "'$(rm -rf /)'");
    }

    #[test]
    fn the_clock_reads_hours_minutes_seconds() {
        let clock = local_clock();
        assert_eq!(clock.len(), 8, "{clock}");
        assert_eq!(clock.matches(':').count(), 2, "{clock}");
    }

    #[test]
    fn the_last_lines_are_kept() {
        assert_eq!(last_lines("a\nb\nc\n", 2), "b\nc");
        assert_eq!(last_lines("a\n", 5), "a");
        assert_eq!(last_lines("", 5), "");
    }
}
