//! A table that fits a width: columns sized to their widest cell, and when the whole is wider
//! than the terminal, columns shrunk then dropped in the order the caller gave, then every line
//! cut. The final summary and zen's status table are laid out with it.
//!
//! Owns the layout only: cells arrive as plain, sanitized text (colour is applied by the caller
//! afterwards, padded cell by padded cell), and it never prints.

use super::width::{left, right, width};

/// One column: its header, its cells, and how it gives way when the table is too wide.
#[derive(Clone, Debug)]
pub struct Column {
    pub header: String,
    pub cells: Vec<String>,
    /// Right-aligned (figures) or left-aligned (names).
    pub right: bool,
    /// The narrowest this column may be cut to before columns are dropped; `None` never cuts.
    pub shrink_to: Option<usize>,
    /// When columns are dropped, lower ranks go first; `None` is never dropped.
    pub drop_rank: Option<u8>,
}

impl Column {
    pub fn new(header: &str, cells: Vec<String>, right: bool) -> Column {
        Column {
            header: header.to_string(),
            cells,
            right,
            shrink_to: None,
            drop_rank: None,
        }
    }

    /// Lets the column be cut down to `w` columns.
    pub fn shrink(mut self, w: usize) -> Column {
        self.shrink_to = Some(w);
        self
    }

    /// Lets the column be dropped, lower `rank`s first.
    pub fn droppable(mut self, rank: u8) -> Column {
        self.drop_rank = Some(rank);
        self
    }

    fn natural(&self) -> usize {
        self.cells
            .iter()
            .map(|c| width(c))
            .chain([width(&self.header)])
            .max()
            .unwrap_or(0)
    }
}

/// The laid-out table: which columns are kept and how wide each is.
#[derive(Clone, Debug)]
pub struct Layout {
    /// Indexes of the kept columns, in order, with their widths.
    pub kept: Vec<(usize, usize)>,
    pub gap: usize,
}

impl Layout {
    /// Lays out `cols` for `max` columns of terminal, `indent` of them taken before the first
    /// column and `gap` between columns. First every shrinkable column is cut toward its
    /// `shrink_to`, widest first; then droppable columns go, lowest rank first, each drop
    /// giving the shrunk columns their width back as far as it reaches.
    pub fn fit(cols: &[Column], max: usize, indent: usize, gap: usize) -> Layout {
        let mut kept: Vec<usize> = (0..cols.len()).collect();
        let mut ranks: Vec<(u8, usize)> = cols
            .iter()
            .enumerate()
            .filter_map(|(i, c)| c.drop_rank.map(|r| (r, i)))
            .collect();
        ranks.sort();
        let mut ranks = ranks.into_iter();
        loop {
            let widths = shrink(cols, &kept, max.saturating_sub(indent), gap);
            let total: usize = widths.iter().sum::<usize>() + gap * kept.len().saturating_sub(1);
            if total + indent <= max {
                return Layout {
                    kept: kept.into_iter().zip(widths).collect(),
                    gap,
                };
            }
            match ranks.next() {
                Some((_, i)) => kept.retain(|&k| k != i),
                None => {
                    return Layout {
                        kept: kept.into_iter().zip(widths).collect(),
                        gap,
                    };
                }
            }
        }
    }

    /// One row: the kept cells of `cells`, each padded to its width. `paint` may colour a cell
    /// after padding (it gets the column index and the padded text).
    pub fn row(
        &self,
        cols: &[Column],
        cells: &[&str],
        paint: &dyn Fn(usize, String) -> String,
    ) -> String {
        let mut parts = Vec::new();
        for &(i, w) in &self.kept {
            let text = cells.get(i).copied().unwrap_or_default();
            let padded = if cols[i].right {
                right(text, w)
            } else {
                left(text, w)
            };
            parts.push(paint(i, padded));
        }
        let line = parts.join(&" ".repeat(self.gap));
        line.trim_end().to_string()
    }

    /// Columns the kept columns take with their gaps, the indent not counted.
    pub fn width(&self) -> usize {
        self.kept.iter().map(|&(_, w)| w).sum::<usize>()
            + self.gap * self.kept.len().saturating_sub(1)
    }

    /// Whether every column was kept at its natural width (nothing gave way).
    pub fn is_whole(&self, cols: &[Column]) -> bool {
        self.kept.len() == cols.len() && self.kept.iter().all(|&(i, w)| w >= cols[i].natural())
    }

    /// Whether column `i` was kept.
    pub fn has(&self, i: usize) -> bool {
        self.kept.iter().any(|&(k, _)| k == i)
    }
}

/// The widths of the `kept` columns for `room` columns: natural widths, then the shrinkable
/// ones cut one column at a time, the widest over its minimum first.
fn shrink(cols: &[Column], kept: &[usize], room: usize, gap: usize) -> Vec<usize> {
    let mut widths: Vec<usize> = kept.iter().map(|&i| cols[i].natural()).collect();
    let over = |w: &[usize]| (w.iter().sum::<usize>() + gap * w.len().saturating_sub(1)) > room;
    while over(&widths) {
        let cut = kept
            .iter()
            .enumerate()
            .filter_map(|(k, &i)| {
                let min = cols[i].shrink_to?;
                (widths[k] > min).then(|| (widths[k] - min, k))
            })
            .max();
        match cut {
            Some((_, k)) => widths[k] -= 1,
            None => break,
        }
    }
    widths
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cols() -> Vec<Column> {
        vec![
            Column::new("name", vec!["a-very-long-job-name".into()], false).shrink(8),
            Column::new("tokens", vec!["12345".into()], true),
            Column::new("model", vec!["sonnet-4-5".into()], false).droppable(1),
        ]
    }

    #[test]
    fn a_table_shrinks_then_drops_to_fit() {
        let c = cols();
        let wide = Layout::fit(&c, 80, 2, 2);
        assert_eq!(wide.kept, [(0, 20), (1, 6), (2, 10)]);
        let narrow = Layout::fit(&c, 30, 2, 2);
        assert_eq!(narrow.kept, [(0, 8), (1, 6), (2, 10)]);
        let tiny = Layout::fit(&c, 20, 2, 2);
        assert_eq!(tiny.kept, [(0, 10), (1, 6)]);
        let row = tiny.row(&c, &["a-very-long-job-name", "12345", "x"], &|_, s| s);
        assert_eq!(row, "a-very-lo…   12345");
    }

    #[test]
    fn a_column_already_narrower_than_its_minimum_is_left_alone() {
        // A short name (3 columns, minimum 8) in a table too wide even without the droppable.
        let c = vec![
            Column::new("job", vec!["one".into()], false).shrink(8),
            Column::new("figures", vec!["x".repeat(30)], true),
        ];
        let l = Layout::fit(&c, 20, 2, 2);
        assert_eq!(l.kept, [(0, 3), (1, 30)]);
    }
}
