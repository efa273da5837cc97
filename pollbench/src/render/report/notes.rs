//! The report's end: the cells that did not complete, numbered in the tables, and the suite as it
//! ran.

use std::fmt::Write as _;

use super::header::chosen_sweeps;
use super::markdown::Markdown;

impl Markdown<'_> {
    /// The cells that did not complete, then the suite as it ran.
    pub(super) fn notes_and_suite(&mut self) {
        if !self.notes.is_empty() {
            let _ = writeln!(self.md, "## Cells that did not complete\n");
            for (i, n) in self.notes.iter().enumerate() {
                let _ = writeln!(self.md, "{}. {n}", i + 1);
            }
            self.md.push('\n');
        }
        let _ = writeln!(self.md, "## The suite\n");
        if let Some(sweeps) = chosen_sweeps(self.run.meta) {
            let _ = writeln!(
                self.md,
                "Only {sweeps} of it ran (`pollbench suite {} {}`).\n",
                self.run.meta.suite,
                self.run
                    .meta
                    .sweeps
                    .iter()
                    .flatten()
                    .map(|s| format!("--sweep {s}"))
                    .collect::<Vec<_>>()
                    .join(" ")
            );
        }
        let _ = writeln!(
            self.md,
            "```toml\n{}\n```",
            self.run.meta.suite_file.trim_end()
        );
    }
}
