//! Training and scoring rows.

/// Rows of features, row-major, with the features' names.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Matrix {
    names: Vec<String>,
    values: Vec<f64>,
}

impl Matrix {
    pub fn new(names: Vec<String>) -> Matrix {
        Matrix { names, values: Vec::new() }
    }

    /// Appends a row; panics when its length is not the number of features (a programming
    /// error, not bad input: rows are built by feature code from the same names).
    pub fn push(&mut self, row: &[f64]) {
        assert_eq!(row.len(), self.names.len(), "a row has one value per feature");
        self.values.extend_from_slice(row);
    }

    pub fn names(&self) -> &[String] {
        &self.names
    }

    pub fn cols(&self) -> usize {
        self.names.len()
    }

    pub fn rows(&self) -> usize {
        self.values.len().checked_div(self.names.len()).unwrap_or(0)
    }

    pub fn row(&self, i: usize) -> &[f64] {
        let n = self.names.len();
        &self.values[i * n..(i + 1) * n]
    }

    pub fn get(&self, row: usize, col: usize) -> f64 {
        self.values[row * self.names.len() + col]
    }

    /// The rows at `indices`, in that order.
    pub fn select(&self, indices: &[usize]) -> Matrix {
        let mut out = Matrix::new(self.names.clone());
        out.values.reserve(indices.len() * self.cols());
        for &i in indices {
            out.values.extend_from_slice(self.row(i));
        }
        out
    }
}
