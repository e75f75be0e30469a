//! Gradient-boosted decision trees for a binary label (log-loss), histogram-based: each
//! feature is cut into at most `bins` quantile bins once, and a split is a scan over bin sums.
//!
//! Each prediction is explained by following its path (Saabas): at every split, the move
//! from a node's value to its child's is credited to the split's feature. The credits and the
//! trees' root values sum to the margin exactly.

use super::rng::Rng;
use super::{Explained, Matrix, logit, sigmoid};
use serde::{Deserialize, Serialize};
use std::sync::OnceLock;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct GbdtParams {
    pub trees: usize,
    pub max_depth: usize,
    pub learning_rate: f64,
    /// The least rows on either side of a split.
    pub min_leaf_rows: usize,
    /// The least hessian (sum of p(1-p)) on either side of a split.
    pub min_child_weight: f64,
    /// L2 penalty on leaf values.
    pub l2: f64,
    /// Share of rows, and of features, each tree sees.
    pub row_sample: f64,
    pub col_sample: f64,
    /// At most this many bins per feature (at most 256).
    pub bins: usize,
    pub seed: u64,
}

impl Default for GbdtParams {
    fn default() -> Self {
        GbdtParams {
            trees: 200,
            max_depth: 3,
            learning_rate: 0.03,
            min_leaf_rows: 40,
            min_child_weight: 1.0,
            l2: 1.0,
            row_sample: 0.8,
            col_sample: 0.8,
            bins: 64,
            seed: 1,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Node {
    /// The node's prediction were it a leaf (already scaled by the learning rate).
    value: f64,
    /// `None` for a leaf; rows with `x <= threshold` (or x not a number) go left.
    split: Option<Split>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Split {
    feature: usize,
    threshold: f64,
    /// The same split on training bins: bin <= `bin` goes left.
    #[serde(skip)]
    bin: u8,
    left: usize,
    right: usize,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Tree {
    nodes: Vec<Node>,
}

impl Tree {
    /// The levels below `node`.
    fn depth(&self, node: usize) -> usize {
        match &self.nodes[node].split {
            Some(s) => 1 + self.depth(s.left).max(self.depth(s.right)),
            None => 0,
        }
    }

    fn leaf_of(&self, row: &[f64]) -> usize {
        let mut at = 0;
        while let Some(s) = &self.nodes[at].split {
            at = if row[s.feature] > s.threshold { s.right } else { s.left };
        }
        at
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Gbdt {
    base: f64,
    trees: Vec<Tree>,
    /// Total split gain per feature: global importances.
    gain: Vec<f64>,
    /// The trees laid out for explaining, made at the first explanation.
    #[serde(skip)]
    flat: OnceLock<Flat>,
}

impl PartialEq for Gbdt {
    fn eq(&self, other: &Gbdt) -> bool {
        (self.base, &self.trees, &self.gain) == (other.base, &other.trees, &other.gain)
    }
}

/// Every tree made complete to the deepest tree's depth and laid out in arrays, level by
/// level (the children of node `i` are `2i + 1` and `2i + 2`), with each node's move from
/// its parent precomputed: an explanation walks each tree in the same number of steps, with
/// no branch to mispredict and no pointer to follow, where the trees as trained (a vector of
/// nodes per tree, optional splits) cost both at every step. Scoring a workspace walks 800
/// trees per account. A leaf above the deepest level is carried down by splits that send
/// everything left and move nothing, so the margin is the same sum.
///
/// The splits, the moves and the deepest level's values are kept apart, each padded to a
/// power of two per tree, so that a walk reads only what it uses (a tree of depth 3: 288
/// bytes, where one array of nodes took 480) and its indexes need no bounds checks.
#[derive(Clone, Debug)]
struct Flat {
    depth: usize,
    /// Per tree, `2^depth` places of which the first `2^depth - 1` are its splits: rows with
    /// `x > threshold` go right (everything goes left of a carried leaf).
    thresholds: Vec<f64>,
    features: Vec<u32>,
    /// Per tree, `2^(depth + 1)` places, the first `2^(depth + 1) - 1` its nodes: each
    /// node's value less its parent's (none for the root), what reaching it credits the
    /// parent's feature.
    steps: Vec<f64>,
    /// Per tree, the `2^depth` values of the deepest level.
    leaves: Vec<f64>,
    /// The base plus every root's value, added in the trees' order.
    bias: f64,
    /// The features the splits read: one more than the largest.
    read: usize,
}

/// Running sums of the credits per feature, taken by the trees in turn: one running sum per
/// feature made each credit wait for the last one stored.
const LANES: usize = 4;

impl Flat {
    fn new(base: f64, trees: &[Tree]) -> Flat {
        let depth = trees.iter().map(|t| t.depth(0)).max().unwrap_or(0);
        let width = 1usize << depth;
        let mut flat = Flat {
            depth,
            thresholds: vec![f64::INFINITY; width * trees.len()],
            features: vec![0; width * trees.len()],
            steps: vec![0.0; 2 * width * trees.len()],
            leaves: vec![0.0; width * trees.len()],
            bias: base,
            read: 0,
        };
        for (t, tree) in trees.iter().enumerate() {
            flat.bias += tree.nodes[0].value;
            flat.place(t, tree, 0, 0, tree.nodes[0].value);
        }
        flat
    }

    /// Puts `tree`'s node `node` (tree `t` of the layout) at place `at`, then its children
    /// below it.
    fn place(&mut self, t: usize, tree: &Tree, node: usize, at: usize, parent_value: f64) {
        let width = 1 << self.depth;
        let n = &tree.nodes[node];
        self.steps[t * 2 * width + at] = n.value - parent_value;
        if at + 1 >= width {
            self.leaves[t * width + at + 1 - width] = n.value;
            return;
        }
        let (left, right) = match &n.split {
            Some(s) => {
                self.thresholds[t * width + at] = s.threshold;
                self.features[t * width + at] = s.feature as u32;
                self.read = self.read.max(s.feature + 1);
                (s.left, s.right)
            }
            None => (node, node),
        };
        self.place(t, tree, left, 2 * at + 1, n.value);
        self.place(t, tree, right, 2 * at + 2, n.value);
    }

    /// The margin of `row` (`base` plus the leaves it reaches, added in the trees' order)
    /// and each feature's credit along its paths, summed in `LANES` running sums per feature
    /// (tree `t` adding to sum `t % LANES`) added up at the end.
    fn explain(&self, row: &[f64], base: f64) -> (f64, Vec<f64>) {
        // Rows as wide as the features the splits read, at most 64: the row and the sums
        // are kept in arrays of a width known to the compiler, so that no index is checked.
        match (self.depth, row.len().next_power_of_two()) {
            _ if self.read > row.len() => self.explain_any(row, base),
            (3, ..=16) => self.explain_fixed::<8, 16, 16>(row, base),
            (3, 32) => self.explain_fixed::<8, 16, 32>(row, base),
            (3, 64) => self.explain_fixed::<8, 16, 64>(row, base),
            (2, ..=16) => self.explain_fixed::<4, 8, 16>(row, base),
            (2, 32) => self.explain_fixed::<4, 8, 32>(row, base),
            (2, 64) => self.explain_fixed::<4, 8, 64>(row, base),
            (4, ..=16) => self.explain_fixed::<16, 32, 16>(row, base),
            (4, 32) => self.explain_fixed::<16, 32, 32>(row, base),
            (4, 64) => self.explain_fixed::<16, 32, 64>(row, base),
            _ => self.explain_any(row, base),
        }
    }

    /// [`Flat::explain`] for trees of `WIDTH = 2^depth` leaves (`NODES = 2 * WIDTH`) and rows
    /// of at most `P` features (a power of two), `LANES` trees walked side by side, one per
    /// running sum, so that their loads, which wait on each other level by level within a
    /// tree, overlap between trees.
    fn explain_fixed<const WIDTH: usize, const NODES: usize, const P: usize>(
        &self,
        row: &[f64],
        base: f64,
    ) -> (f64, Vec<f64>) {
        let depth = WIDTH.trailing_zeros();
        let mut x = [0.0; P];
        x[..row.len()].copy_from_slice(row);
        let mut sums = [[0.0; P]; LANES];
        let (thresholds, _) = self.thresholds.as_chunks::<WIDTH>();
        let (features, _) = self.features.as_chunks::<WIDTH>();
        let (steps, _) = self.steps.as_chunks::<NODES>();
        let (leaves, _) = self.leaves.as_chunks::<WIDTH>();
        let trees = leaves.len();
        let mut margin = base;
        for first in (0..trees - trees % LANES).step_by(LANES) {
            let side_by_side = first..first + LANES;
            let thresholds: &[[f64; WIDTH]; LANES] = thresholds[side_by_side.clone()].try_into().expect("trees");
            let features: &[[u32; WIDTH]; LANES] = features[side_by_side.clone()].try_into().expect("trees");
            let steps: &[[f64; NODES]; LANES] = steps[side_by_side.clone()].try_into().expect("trees");
            let leaves: &[[f64; WIDTH]; LANES] = leaves[side_by_side].try_into().expect("trees");
            let mut at = [0usize; LANES];
            for _ in 0..depth {
                for k in 0..LANES {
                    let f = features[k][at[k] & (WIDTH - 1)] as usize & (P - 1);
                    at[k] = 2 * at[k] + 1 + usize::from(x[f] > thresholds[k][at[k] & (WIDTH - 1)]);
                    sums[k][f] += steps[k][at[k] & (NODES - 1)];
                }
            }
            for k in 0..LANES {
                margin += leaves[k][(at[k] + 1) & (WIDTH - 1)];
            }
        }
        for t in trees - trees % LANES..trees {
            let (thresholds, features, steps) = (&thresholds[t], &features[t], &steps[t]);
            let mut at = 0;
            for _ in 0..depth {
                let f = features[at & (WIDTH - 1)] as usize & (P - 1);
                at = 2 * at + 1 + usize::from(x[f] > thresholds[at & (WIDTH - 1)]);
                sums[t % LANES][f] += steps[at & (NODES - 1)];
            }
            margin += leaves[t][(at + 1) & (WIDTH - 1)];
        }
        let contributions = (0..row.len()).map(|f| (sums[0][f] + sums[1][f]) + (sums[2][f] + sums[3][f])).collect();
        (margin, contributions)
    }

    /// [`Flat::explain`] for trees of any depth and rows of any width, one tree after the
    /// other.
    fn explain_any(&self, row: &[f64], base: f64) -> (f64, Vec<f64>) {
        let (width, p) = (1 << self.depth, row.len());
        let mut lanes = vec![0.0; LANES * p];
        let mut margin = base;
        for t in 0..self.leaves.len() / width {
            let (thresholds, features) = (&self.thresholds[t * width..][..width], &self.features[t * width..][..width]);
            let steps = &self.steps[t * 2 * width..][..2 * width];
            let lane = (t % LANES) * p;
            let mut at = 0;
            for _ in 0..self.depth {
                let f = features[at] as usize;
                at = 2 * at + 1 + usize::from(row[f] > thresholds[at]);
                lanes[lane + f] += steps[at];
            }
            margin += self.leaves[t * width + at + 1 - width];
        }
        let contributions = (0..p).map(|f| (lanes[f] + lanes[p + f]) + (lanes[2 * p + f] + lanes[3 * p + f])).collect();
        (margin, contributions)
    }
}

/// Per-feature cut points: a value falls in bin `b` = the number of cuts below it.
struct Bins {
    cuts: Vec<Vec<f64>>,
    /// Column-major bin of each row.
    binned: Vec<u8>,
    rows: usize,
}

impl Bins {
    fn new(x: &Matrix, max_bins: usize) -> Bins {
        let (n, p) = (x.rows(), x.cols());
        let max_bins = max_bins.clamp(2, 256);
        let mut cuts = Vec::with_capacity(p);
        let mut binned = vec![0u8; n * p];
        for j in 0..p {
            let mut values: Vec<f64> = (0..n).map(|i| x.get(i, j)).filter(|v| !v.is_nan()).collect();
            values.sort_by(f64::total_cmp);
            let mut distinct = values.clone();
            distinct.dedup();
            let c: Vec<f64> = if distinct.len() <= max_bins {
                distinct.windows(2).map(|w| w[0] + (w[1] - w[0]) / 2.0).collect()
            } else {
                let mut c: Vec<f64> = (1..max_bins).map(|k| values[k * values.len() / max_bins]).collect();
                c.dedup();
                // A cut at the largest value would leave its right side empty.
                c.retain(|&v| v < *distinct.last().expect("values exist"));
                c
            };
            for i in 0..n {
                let v = x.get(i, j);
                binned[j * n + i] = if v.is_nan() { 0 } else { c.partition_point(|&t| t < v) as u8 };
            }
            cuts.push(c);
        }
        Bins { cuts, binned, rows: n }
    }

    fn bin(&self, feature: usize, row: usize) -> u8 {
        self.binned[feature * self.rows + row]
    }
}

#[derive(Clone, Copy, Default)]
struct Sums {
    g: f64,
    h: f64,
    n: usize,
}

impl Gbdt {
    pub fn fit(x: &Matrix, y: &[bool], params: &GbdtParams) -> Gbdt {
        assert_eq!(x.rows(), y.len(), "one label per row");
        let (n, p) = (x.rows(), x.cols());
        let bins = Bins::new(x, params.bins);
        let positives = y.iter().filter(|&&v| v).count() as f64;
        let base = logit((positives + 0.5) / (n as f64 + 1.0));
        let mut margin = vec![base; n];
        let mut rng = Rng::new(params.seed);
        let mut model =
            Gbdt { base, trees: Vec::with_capacity(params.trees), gain: vec![0.0; p], flat: OnceLock::new() };
        let (mut g, mut h) = (vec![0.0; n], vec![0.0; n]);
        for _ in 0..params.trees {
            for i in 0..n {
                let prob = sigmoid(margin[i]);
                g[i] = prob - if y[i] { 1.0 } else { 0.0 };
                h[i] = (prob * (1.0 - prob)).max(1e-12);
            }
            let rows: Vec<u32> = (0..n as u32).filter(|_| rng.unit() < params.row_sample).collect();
            let mut features: Vec<usize> = (0..p).filter(|_| rng.unit() < params.col_sample).collect();
            if features.is_empty() && p > 0 {
                features.push((rng.next_u64() % p as u64) as usize);
            }
            let tree = grow(&bins, &g, &h, rows, &features, params, &mut model.gain);
            for (i, m) in margin.iter_mut().enumerate() {
                let mut at = 0;
                while let Some(s) = &tree.nodes[at].split {
                    at = if bins.bin(s.feature, i) <= s.bin { s.left } else { s.right };
                }
                *m += tree.nodes[at].value;
            }
            model.trees.push(tree);
        }
        model
    }

    pub fn margin(&self, row: &[f64]) -> f64 {
        self.base + self.trees.iter().map(|t| t.nodes[t.leaf_of(row)].value).sum::<f64>()
    }

    /// The margin of `row` with each feature's credit along its paths.
    pub fn explain(&self, row: &[f64]) -> Explained {
        let flat = self.flat.get_or_init(|| Flat::new(self.base, &self.trees));
        let (margin, contributions) = flat.explain(row, self.base);
        Explained { margin, bias: flat.bias, contributions }
    }

    /// Total split gain per feature.
    pub fn importances(&self) -> &[f64] {
        &self.gain
    }
}

fn leaf_value(s: Sums, params: &GbdtParams) -> f64 {
    -s.g / (s.h + params.l2) * params.learning_rate
}

fn score(s: Sums, l2: f64) -> f64 {
    s.g * s.g / (s.h + l2)
}

/// Grows one tree depth-first over `rows`.
fn grow(
    bins: &Bins,
    g: &[f64],
    h: &[f64],
    rows: Vec<u32>,
    features: &[usize],
    params: &GbdtParams,
    gain: &mut [f64],
) -> Tree {
    let mut nodes = Vec::new();
    let mut stack = vec![(rows, 0usize, None::<(usize, bool)>)];
    while let Some((rows, depth, parent)) = stack.pop() {
        let total = rows.iter().fold(Sums::default(), |s, &i| Sums {
            g: s.g + g[i as usize],
            h: s.h + h[i as usize],
            n: s.n + 1,
        });
        let id = nodes.len();
        nodes.push(Node { value: leaf_value(total, params), split: None });
        if let Some((p, left)) = parent {
            let s: &mut Split = nodes[p].split.as_mut().expect("a parent splits");
            if left {
                s.left = id;
            } else {
                s.right = id;
            }
        }
        if depth >= params.max_depth || total.n < 2 * params.min_leaf_rows.max(1) {
            continue;
        }
        let Some((feature, bin, best)) = best_split(bins, g, h, &rows, features, total, params) else { continue };
        gain[feature] += best;
        let (left, right): (Vec<u32>, Vec<u32>) = rows.into_iter().partition(|&i| bins.bin(feature, i as usize) <= bin);
        let threshold = bins.cuts[feature][bin as usize];
        nodes[id].split = Some(Split { feature, threshold, bin, left: 0, right: 0 });
        stack.push((right, depth + 1, Some((id, false))));
        stack.push((left, depth + 1, Some((id, true))));
    }
    Tree { nodes }
}

/// The split of `rows` with the largest gain: (feature, last bin on the left, gain).
fn best_split(
    bins: &Bins,
    g: &[f64],
    h: &[f64],
    rows: &[u32],
    features: &[usize],
    total: Sums,
    params: &GbdtParams,
) -> Option<(usize, u8, f64)> {
    let parent = score(total, params.l2);
    let mut best: Option<(usize, u8, f64)> = None;
    let mut hist = [Sums::default(); 257];
    for &f in features {
        let cuts = bins.cuts[f].len();
        if cuts == 0 {
            continue;
        }
        hist[..=cuts].fill(Sums::default());
        for &i in rows {
            let b = &mut hist[bins.bin(f, i as usize) as usize];
            b.g += g[i as usize];
            b.h += h[i as usize];
            b.n += 1;
        }
        let mut left = Sums::default();
        for (b, bin) in hist[..cuts].iter().enumerate() {
            left = Sums { g: left.g + bin.g, h: left.h + bin.h, n: left.n + bin.n };
            let right = Sums { g: total.g - left.g, h: total.h - left.h, n: total.n - left.n };
            if left.n < params.min_leaf_rows
                || right.n < params.min_leaf_rows
                || left.h < params.min_child_weight
                || right.h < params.min_child_weight
            {
                continue;
            }
            let gain = score(left, params.l2) + score(right, params.l2) - parent;
            if gain > 1e-12 && best.is_none_or(|(_, _, g)| gain > g) {
                best = Some((f, b as u8, gain));
            }
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::metrics::auc;

    /// Churn that depends on an interaction no linear model sees: new accounts that use
    /// little, and old accounts that use a lot.
    fn interaction(n: usize, seed: u64) -> (Matrix, Vec<bool>) {
        let mut rng = Rng::new(seed);
        let mut x = Matrix::new(vec!["usage".into(), "tenure".into(), "noise".into()]);
        let mut y = Vec::new();
        for _ in 0..n {
            let (usage, tenure, noise) = (rng.unit() * 100.0, rng.unit() * 365.0, rng.unit());
            let risky = (usage < 20.0 && tenure < 90.0) || (usage > 80.0 && tenure > 270.0);
            x.push(&[usage, tenure, noise]);
            y.push(rng.unit() < if risky { 0.8 } else { 0.02 });
        }
        (x, y)
    }

    #[test]
    fn learns_an_interaction_and_generalises() {
        let (x, y) = interaction(8_000, 1);
        let (xt, yt) = interaction(4_000, 2);
        let m = Gbdt::fit(&x, &y, &GbdtParams::default());
        let scores: Vec<f64> = (0..xt.rows()).map(|i| m.margin(xt.row(i))).collect();
        let a = auc(&scores, &yt);
        assert!(a > 0.8, "held-out AUC {a}");
        let linear = crate::model::Logistic::fit(&x, &y, &Default::default());
        let linear_scores: Vec<f64> = (0..xt.rows()).map(|i| linear.margin(xt.row(i))).collect();
        assert!(a > auc(&linear_scores, &yt) + 0.02, "trees see what a line does not");
        let imp = m.importances();
        assert!(imp[0] > 5.0 * imp[2] && imp[1] > 5.0 * imp[2], "noise matters little: {imp:?}");
    }

    #[test]
    fn explanations_sum_to_the_margin_and_credit_the_cause() {
        let (x, y) = interaction(4_000, 3);
        let m = Gbdt::fit(&x, &y, &GbdtParams::default());
        let risky = [5.0, 30.0, 0.5];
        let e = m.explain(&risky);
        assert!((e.bias + e.contributions.iter().sum::<f64>() - e.margin).abs() < 1e-9);
        assert!((e.margin - m.margin(&risky)).abs() < 1e-12);
        assert!(e.contributions[0] > 0.0 && e.contributions[1] > 0.0, "{:?}", e.contributions);
        assert!(e.contributions[2].abs() < e.contributions[0].min(e.contributions[1]));
    }

    /// `m`'s explanations of `rows` by its layout against its trees as trained, and the
    /// layout's walk of a known depth and width against its walk of any.
    fn explains_as_trained(m: &Gbdt, rows: &[Vec<f64>]) {
        let walked = |row: &[f64]| {
            let (mut contributions, mut bias, mut margin) = (vec![0.0; row.len()], m.base, m.base);
            for tree in &m.trees {
                let mut at = 0;
                bias += tree.nodes[0].value;
                while let Some(s) = &tree.nodes[at].split {
                    let next = if row[s.feature] > s.threshold { s.right } else { s.left };
                    contributions[s.feature] += tree.nodes[next].value - tree.nodes[at].value;
                    at = next;
                }
                margin += tree.nodes[at].value;
            }
            Explained { margin, bias, contributions }
        };
        let flat = Flat::new(m.base, &m.trees);
        for row in rows {
            let (laid_out, walked) = (m.explain(row), walked(row));
            // The margin is the same sum; the credits are summed in another order.
            assert_eq!((laid_out.margin, laid_out.bias), (walked.margin, walked.bias), "{row:?}");
            for (a, b) in laid_out.contributions.iter().zip(&walked.contributions) {
                assert!((a - b).abs() < 1e-12, "{row:?}: {a} vs {b}");
            }
            // Walked side by side or one tree after another, the sums are the same to the bit.
            let any = flat.explain_any(row, m.base);
            assert_eq!(any.0.to_bits(), laid_out.margin.to_bits());
            let bits = |v: &[f64]| v.iter().map(|c| c.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&any.1), bits(&laid_out.contributions), "{row:?}");
        }
    }

    /// [`interaction`] with `extra` columns of noise after its three.
    fn wide(n: usize, seed: u64, extra: usize) -> (Matrix, Vec<bool>) {
        let (x, y) = interaction(n, seed);
        let mut rng = Rng::new(seed + 100);
        let mut names: Vec<String> = vec!["usage".into(), "tenure".into(), "noise".into()];
        names.extend((0..extra).map(|i| format!("noise {i}")));
        let mut w = Matrix::new(names);
        for i in 0..n {
            let mut row = x.row(i).to_vec();
            row.extend((0..extra).map(|_| rng.unit()));
            w.push(&row);
        }
        (w, y)
    }

    #[test]
    fn the_laid_out_trees_explain_as_the_trained_ones() {
        // Large leaves stop some branches early: the trees are uneven. Tree counts that are
        // and are not a multiple of the trees walked side by side; depths and widths with a
        // walk of their own and without.
        let cases =
            [(60, 4, 0, 300), (63, 3, 0, 300), (61, 2, 20, 800), (62, 3, 45, 500), (30, 6, 0, 100), (21, 3, 70, 500)];
        for (trees, max_depth, extra, min_leaf_rows) in cases {
            let (x, y) = wide(3_000, 5, extra);
            let params = GbdtParams { trees, max_depth, min_leaf_rows, ..Default::default() };
            let m = Gbdt::fit(&x, &y, &params);
            let depths: Vec<usize> = m.trees.iter().map(|t| t.depth(0)).collect();
            assert!(depths.contains(&max_depth) && depths.iter().any(|&d| d < max_depth), "{depths:?}");
            let mut rows: Vec<Vec<f64>> = (0..300).map(|i| x.row(i).to_vec()).collect();
            let with = |head: [f64; 3]| head.into_iter().chain(std::iter::repeat_n(0.5, extra)).collect::<Vec<_>>();
            rows.push(with([f64::NAN, 100.0, 0.5]));
            rows.push(with([f64::INFINITY, f64::NEG_INFINITY, f64::NAN]));
            explains_as_trained(&m, &rows);
        }
    }

    #[test]
    fn training_is_deterministic_for_a_seed() {
        let (x, y) = interaction(2_000, 4);
        let params = GbdtParams { trees: 20, ..Default::default() };
        assert_eq!(Gbdt::fit(&x, &y, &params), Gbdt::fit(&x, &y, &params));
        let other = Gbdt::fit(&x, &y, &GbdtParams { seed: 9, ..params });
        assert_ne!(other, Gbdt::fit(&x, &y, &GbdtParams { trees: 20, ..Default::default() }));
    }
}
