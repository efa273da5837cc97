//! report.md: the Markdown its sections write, and the file.

use std::path::Path;

use super::run::Run;

/// report.md being written: the run it reports, and the Markdown so far.
pub(super) struct Markdown<'r> {
    pub(super) run: &'r Run<'r>,
    pub(super) md: String,
    /// Cells that did not complete, numbered in the tables, explained at the end.
    pub(super) notes: Vec<String>,
}

impl<'r> Markdown<'r> {
    pub(super) fn new(run: &'r Run<'r>) -> Markdown<'r> {
        Markdown {
            run,
            md: String::new(),
            notes: Vec::new(),
        }
    }

    /// Write the Markdown to `path`, atomically: a reader finds the old report or the new one.
    pub(super) fn write(&self, path: &Path) -> Result<(), String> {
        pollbench_schema::file::write_atomically(path, self.md.as_bytes())
            .map_err(|e| format!("{}: {e}", path.display()))
    }
}
