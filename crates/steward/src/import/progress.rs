//! An import's progress on stderr: a bar redrawn in place while a terminal watches, and one
//! plain line at the end whatever stderr is (a log file, a pipe), so scripts see what happened.

use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::{Imported, Options};

/// How often the bar is redrawn at most.
const REDRAW: Duration = Duration::from_millis(100);
const WIDTH: usize = 24;

/// One pass over the file: rows against the total when it is known, else bytes read from
/// disk against the file's size. The threads that parse the file's chunks add to it.
pub(super) struct Bar {
    phase: &'static str,
    total: Option<u64>,
    size: u64,
    started: Instant,
    rows: AtomicU64,
    read: AtomicU64,
    /// When to redraw next; held while drawing.
    next: Mutex<Instant>,
    /// Drawn only on a terminal; `false` makes every call but `finish` nearly free.
    terminal: bool,
    /// A line is on the screen that the next output must not continue.
    open: AtomicBool,
}

impl Bar {
    pub(super) fn new(phase: &'static str, total: Option<u64>, path: &std::path::Path) -> Bar {
        let now = Instant::now();
        Bar {
            phase,
            total,
            size: std::fs::metadata(path).map_or(0, |m| m.len()),
            started: now,
            rows: AtomicU64::new(0),
            read: AtomicU64::new(0),
            next: Mutex::new(now),
            terminal: std::io::stderr().is_terminal(),
            open: AtomicBool::new(false),
        }
    }

    /// `rows` more are done and `read` bytes of the file were read; redraws when it is time.
    pub(super) fn add(&self, rows: u64, read: u64) {
        self.read.fetch_max(read, Ordering::Relaxed);
        let done = self.rows.fetch_add(rows, Ordering::Relaxed) + rows;
        if !self.terminal {
            return;
        }
        // Another thread drawing is as good.
        let Ok(mut next) = self.next.try_lock() else { return };
        let now = Instant::now();
        if now >= *next {
            *next = now + REDRAW;
            self.draw(done, false);
            self.open.store(true, Ordering::Relaxed);
        }
    }

    /// The rows done so far.
    pub(super) fn rows(&self) -> u64 {
        self.rows.load(Ordering::Relaxed)
    }

    /// The pass is over: the bar's last state stays on the screen.
    pub(super) fn finish(&self) {
        if self.terminal {
            let _drawing = self.next.lock();
            self.draw(self.rows(), true);
            self.open.store(false, Ordering::Relaxed);
        }
    }

    fn draw(&self, rows: u64, done: bool) {
        let read = self.read.load(Ordering::Relaxed);
        let line = line(self.phase, rows, self.total, read, self.size, self.started.elapsed(), done);
        let mut err = std::io::stderr().lock();
        let _ = write!(err, "\r\x1b[2K{line}");
        if done {
            let _ = writeln!(err);
        }
        let _ = err.flush();
    }
}

impl Drop for Bar {
    /// A pass cut short by an error: the error goes on a line of its own.
    fn drop(&mut self) {
        if *self.open.get_mut() {
            eprintln!();
        }
    }
}

/// The bar as text: `importing [=====>      ]  42%  1,234 / 2,938 rows  12,000 rows/s  3 s`.
fn line(phase: &str, rows: u64, total: Option<u64>, read: u64, size: u64, elapsed: Duration, done: bool) -> String {
    let fraction = match total {
        _ if done => 1.0,
        Some(t) => rows as f64 / t.max(1) as f64,
        None => read as f64 / size.max(1) as f64,
    }
    .clamp(0.0, 1.0);
    let filled = (fraction * WIDTH as f64).round() as usize;
    let bar: String = (0..WIDTH)
        .map(|i| match i.cmp(&filled) {
            std::cmp::Ordering::Less => '=',
            std::cmp::Ordering::Equal if !done => '>',
            _ => ' ',
        })
        .collect();
    let count = match total {
        Some(t) => format!("{} / {} rows", thousands(rows), thousands(t)),
        None => format!("{} rows, {} / {}", thousands(rows), bytes(read.min(size)), bytes(size)),
    };
    let secs = elapsed.as_secs_f64();
    let rate = if secs > 0.0 { rows as f64 / secs } else { 0.0 };
    format!("{phase:<9} [{bar}] {:>3.0}%  {count}  {} rows/s  {:.0} s", fraction * 100.0, thousands(rate as u64), secs)
}

fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn bytes(n: u64) -> String {
    match n {
        n if n >= 1 << 30 => format!("{:.1} GB", n as f64 / (1u64 << 30) as f64),
        n if n >= 1 << 20 => format!("{:.1} MB", n as f64 / (1u64 << 20) as f64),
        n if n >= 1 << 10 => format!("{:.1} KB", n as f64 / (1u64 << 10) as f64),
        n => format!("{n} B"),
    }
}

/// The line an import ends with, on a terminal or not.
pub(super) fn summary(options: &Options, out: &Imported, checked: Duration, stored: Duration, all: Duration) {
    let kind = format!("{:?}", options.kind).to_lowercase();
    eprintln!(
        "imported {} rows of {kind} from {} ({} stored) in {:.1} s: checking {:.1} s, storing {:.1} s, processing {:.1} s",
        thousands(out.rows),
        options.file.display(),
        thousands(out.stored),
        all.as_secs_f64(),
        checked.as_secs_f64(),
        (stored - checked).as_secs_f64(),
        (all - stored).as_secs_f64(),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bar_shows_rows_against_the_total_or_bytes_against_the_size() {
        let s = Duration::from_secs(2);
        assert_eq!(
            line("importing", 1_500, Some(3_000), 0, 0, s, false),
            "importing [============>           ]  50%  1,500 / 3,000 rows  750 rows/s  2 s"
        );
        assert_eq!(
            line("checking", 10, None, 3 << 20, 12 << 20, s, false),
            "checking  [======>                 ]  25%  10 rows, 3.0 MB / 12.0 MB  5 rows/s  2 s"
        );
        assert!(line("checking", 10, None, 3, 12, s, true).contains("[========================] 100%"));
        assert_eq!(thousands(1_234_567), "1,234,567");
        assert_eq!(thousands(999), "999");
    }
}
