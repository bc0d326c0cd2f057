//! Terminal presentation: prompts, tables, sizes, the upload progress bar.

use std::io::{BufRead as _, IsTerminal as _, Write as _};
use std::os::fd::AsFd as _;

use anyhow::Context as _;

/// Whether standard input is a terminal (prompts are allowed).
pub(crate) fn interactive() -> bool {
    std::io::stdin().is_terminal()
}

/// Asks for one line of input.
pub(crate) fn prompt(label: &str) -> anyhow::Result<String> {
    eprint!("{label}> ");
    std::io::stderr().flush().ok();
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .context("cannot read the answer from the terminal")?;
    Ok(line.trim().to_string())
}

/// Asks for a secret without echoing it.
pub(crate) fn prompt_secret(label: &str) -> anyhow::Result<String> {
    use nix::sys::termios::{tcgetattr, tcsetattr, LocalFlags, SetArg};
    let stdin = std::io::stdin();
    let saved = tcgetattr(stdin.as_fd()).ok();
    if let Some(t) = &saved {
        let mut quiet = t.clone();
        quiet.local_flags.remove(LocalFlags::ECHO);
        let _ = tcsetattr(stdin.as_fd(), SetArg::TCSANOW, &quiet);
    }
    let answer = prompt(label);
    if let Some(t) = &saved {
        let _ = tcsetattr(stdin.as_fd(), SetArg::TCSANOW, t);
    }
    eprintln!();
    answer
}

/// Asks a yes/no question; anything but `y`/`yes` is no.
pub(crate) fn confirm(question: &str) -> anyhow::Result<bool> {
    let answer = prompt(&format!("{question} [yN]"))?;
    Ok(matches!(answer.to_ascii_lowercase().as_str(), "y" | "yes"))
}

/// Prints rows as left-aligned columns separated by three spaces.
pub(crate) fn table(rows: &[Vec<String>]) -> String {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let mut widths = vec![0; cols];
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i + 1 == row.len() {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<width$}   ", width = widths[i]));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// A byte count as cf shows it: `12.3M`, `1G`, `512K`.
pub(crate) fn human_bytes(bytes: u64) -> String {
    const UNITS: [(&str, f64); 4] = [
        ("T", 1024.0 * 1024.0 * 1024.0 * 1024.0),
        ("G", 1024.0 * 1024.0 * 1024.0),
        ("M", 1024.0 * 1024.0),
        ("K", 1024.0),
    ];
    let b = bytes as f64;
    for (unit, size) in UNITS {
        if b >= size {
            let v = b / size;
            return if (v - v.round()).abs() < 0.05 {
                format!("{}{unit}", v.round())
            } else {
                format!("{v:.1}{unit}")
            };
        }
    }
    format!("{bytes}B")
}

/// An upload progress bar on stderr, when stderr is a terminal.
pub(crate) fn upload_bar(total: u64) -> Option<indicatif::ProgressBar> {
    if !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = indicatif::ProgressBar::new(total);
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "   {bar:40} {bytes}/{total_bytes} ({bytes_per_sec})",
    ) {
        bar.set_style(style);
    }
    Some(bar)
}

/// A spinner with a message on stderr, when stderr is a terminal.
pub(crate) fn spinner(message: &str) -> Option<indicatif::ProgressBar> {
    if !std::io::stderr().is_terminal() {
        return None;
    }
    let spinner = indicatif::ProgressBar::new_spinner().with_message(message.to_string());
    spinner.enable_steady_tick(std::time::Duration::from_millis(120));
    Some(spinner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_columns() {
        let rows = vec![
            vec!["name".to_string(), "state".to_string()],
            vec!["a-long-name".to_string(), "started".to_string()],
        ];
        assert_eq!(table(&rows), "name          state\na-long-name   started\n");
    }

    #[test]
    fn bytes_read_like_cf() {
        assert_eq!(human_bytes(0), "0B");
        assert_eq!(human_bytes(512 * 1024), "512K");
        assert_eq!(human_bytes(256 * 1024 * 1024), "256M");
        assert_eq!(human_bytes(1024 * 1024 * 1024), "1G");
        assert_eq!(human_bytes(12_900_000), "12.3M");
    }
}
