//! The table the benchmark prints: one row per figure, with its target and whether it is met.

/// One figure.
#[derive(Clone, Debug)]
pub struct Row {
    /// The phase it belongs to.
    pub phase: &'static str,
    /// What it measures.
    pub figure: String,
    /// The measured value, with its unit.
    pub value: String,
    /// The target, when there is one.
    pub target: String,
    /// Whether the target is met, when there is one.
    pub met: Option<bool>,
}

/// Every figure of a run, in order.
#[derive(Clone, Debug, Default)]
pub struct Report {
    rows: Vec<Row>,
}

impl Report {
    /// A figure without a target.
    pub fn add(&mut self, phase: &'static str, figure: &str, value: String) {
        self.rows.push(Row {
            phase,
            figure: figure.to_owned(),
            value,
            target: String::new(),
            met: None,
        });
    }

    /// A figure with its target and whether it is met.
    pub fn check(
        &mut self,
        phase: &'static str,
        figure: &str,
        value: String,
        target: &str,
        met: bool,
    ) {
        self.rows.push(Row {
            phase,
            figure: figure.to_owned(),
            value,
            target: target.to_owned(),
            met: Some(met),
        });
    }

    /// How many targets are missed.
    pub fn missed(&self) -> usize {
        self.rows
            .iter()
            .filter(|row| row.met == Some(false))
            .count()
    }

    /// The table, as Markdown (readable as is, and pasteable into the README).
    pub fn table(&self) -> String {
        let mut lines = vec![
            "| phase | figure | value | target | met |".to_owned(),
            "|---|---|---|---|---|".to_owned(),
        ];
        for row in &self.rows {
            let met = match row.met {
                Some(true) => "yes",
                Some(false) => "**no**",
                None => "",
            };
            lines.push(format!(
                "| {} | {} | {} | {} | {met} |",
                row.phase, row.figure, row.value, row.target
            ));
        }
        lines.join("\n")
    }
}
