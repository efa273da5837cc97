//! The report's clients section: the parts of cells run by several load-gen clients, where they
//! disagree.

use std::fmt::Write as _;

use pollbench_schema::run::ClientPart;

use super::markdown::Markdown;

impl Markdown<'_> {
    /// Cells run by several clients: their parts, where the clients disagree by more than the
    /// noise (see [`clients_disagree`]); one line where none does.
    pub(super) fn clients(&mut self) {
        let runs: Vec<(&str, &Vec<ClientPart>)> = self
            .run
            .completed
            .iter()
            .filter_map(|(id, run)| run.clients.as_ref().map(|parts| (*id, parts)))
            .collect();
        let Some((_, first)) = runs.first() else {
            return;
        };
        let _ = writeln!(
            self.md,
            "## Clients
"
        );
        let disagreeing: Vec<_> = runs
            .iter()
            .filter(|(_, parts)| clients_disagree(parts))
            .collect();
        if disagreeing.is_empty() {
            let _ = writeln!(
                self.md,
                "{} load-gen clients per cell; in every cell their msgs/s per connection agreed \
                 within {:.0}% and none had errors (each cell's parts are under `clients` in its \
                 JSON).\n",
                first.len(),
                (CLIENT_DISAGREEMENT - 1.0) * 100.0
            );
            return;
        }
        let _ = writeln!(
            self.md,
            "Cells whose clients' msgs/s per connection differ by more than {:.0}% (the noise of \
             this kind of machine), or where a client had errors: the cell's figures are over all \
             its clients, and these are the parts.\n",
            (CLIENT_DISAGREEMENT - 1.0) * 100.0
        );
        let _ = writeln!(
            self.md,
            "| cell | client | connections | msgs/s | per connection | p99 | errors |\n|---|---|---|---|---|---|---|"
        );
        for (id, parts) in disagreeing {
            for part in parts.iter() {
                let _ = writeln!(
                    self.md,
                    "| {id} | {} | {} | {} | {} | {} | {} |",
                    part.host,
                    part.connections,
                    pollbench_common::human_count(part.throughput_msgs_per_s),
                    pollbench_common::human_count(
                        part.throughput_msgs_per_s / part.connections.max(1) as f64
                    ),
                    pollbench_common::human_us(part.p99_us as f64),
                    part.errors
                );
            }
        }
        self.md.push('\n');
    }
}

/// How far apart clients' msgs/s per connection may be (the ratio of the highest to the lowest)
/// before the report lists them: 25%, the top of this project's run-to-run noise per cell.
const CLIENT_DISAGREEMENT: f64 = 1.25;

/// Whether a cell's clients disagree by more than the noise: msgs/s per connection further apart
/// than [`CLIENT_DISAGREEMENT`], or errors at any client.
fn clients_disagree(parts: &[ClientPart]) -> bool {
    let per_connection: Vec<f64> = parts
        .iter()
        .map(|p| p.throughput_msgs_per_s / p.connections.max(1) as f64)
        .collect();
    let lo = per_connection.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = per_connection.iter().copied().fold(0.0, f64::max);
    parts.iter().any(|p| p.errors > 0) || hi > lo * CLIENT_DISAGREEMENT
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clients_disagree_past_the_noise_or_with_errors() {
        let part = |connections: usize, msgs_per_s: f64, errors: u64| ClientPart {
            host: "h".into(),
            connections,
            messages: 1,
            throughput_msgs_per_s: msgs_per_s,
            p99_us: 1,
            errors,
        };
        // Per connection: 1,000 and 1,200 msgs/s agree; 1,000 and 1,300 do not.
        assert!(!clients_disagree(&[part(5, 5000.0, 0), part(5, 6000.0, 0)]));
        assert!(clients_disagree(&[part(5, 5000.0, 0), part(5, 6500.0, 0)]));
        // Unequal shares are compared per connection: 6 and 4 connections at the same pace agree.
        assert!(!clients_disagree(&[part(6, 6000.0, 0), part(4, 4000.0, 0)]));
        assert!(clients_disagree(&[part(5, 5000.0, 1), part(5, 5000.0, 0)]));
    }
}
