//! How a model card judges a model on a holdout: ranking (AUC, PR-AUC, top-decile lift) and
//! calibration (expected calibration error).

/// Row indices by score (ascending, or descending), cut into runs of equal scores; each run
/// with the position of its first row.
fn ties(scores: &[f64], descending: bool) -> Vec<(usize, Vec<usize>)> {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| if descending { scores[b].total_cmp(&scores[a]) } else { scores[a].total_cmp(&scores[b]) });
    let mut runs: Vec<(usize, Vec<usize>)> = Vec::new();
    for (at, i) in order.into_iter().enumerate() {
        match runs.last_mut() {
            Some((_, run)) if scores[run[0]] == scores[i] => run.push(i),
            _ => runs.push((at, vec![i])),
        }
    }
    runs
}

/// The area under the ROC curve: the chance that a random positive scores above a random
/// negative, ties counting half. `NaN` without both classes.
pub fn auc(scores: &[f64], labels: &[bool]) -> f64 {
    assert_eq!(scores.len(), labels.len(), "one label per score");
    // Mann-Whitney: the positives' rank sum, ties given their average rank.
    let (mut rank_sum, mut positives) = (0.0, 0usize);
    for (at, run) in ties(scores, false) {
        let average_rank = at as f64 + (run.len() - 1) as f64 / 2.0 + 1.0;
        let hits = run.iter().filter(|&&k| labels[k]).count();
        rank_sum += average_rank * hits as f64;
        positives += hits;
    }
    let negatives = scores.len() - positives;
    if positives == 0 || negatives == 0 {
        return f64::NAN;
    }
    let p = positives as f64;
    (rank_sum - p * (p + 1.0) / 2.0) / (p * negatives as f64)
}

/// Average precision (the area under the precision-recall curve, as a step function), ties
/// taken together. `NaN` without positives.
pub fn average_precision(scores: &[f64], labels: &[bool]) -> f64 {
    assert_eq!(scores.len(), labels.len(), "one label per score");
    let total = labels.iter().filter(|&&l| l).count();
    if total == 0 {
        return f64::NAN;
    }
    let (mut hits, mut seen, mut ap) = (0usize, 0usize, 0.0);
    for (_, run) in ties(scores, true) {
        let new_hits = run.iter().filter(|&&k| labels[k]).count();
        hits += new_hits;
        seen += run.len();
        ap += new_hits as f64 / total as f64 * (hits as f64 / seen as f64);
    }
    ap
}

/// The positive rate among the highest-scored tenth (rounded up) over the overall rate.
/// Equal scores keep the order they are given in (callers sort rows by their tie-break
/// first). `NaN` without positives.
pub fn top_decile_lift(scores: &[f64], labels: &[bool]) -> f64 {
    assert_eq!(scores.len(), labels.len(), "one label per score");
    let total = labels.iter().filter(|&&l| l).count();
    if total == 0 {
        return f64::NAN;
    }
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    let k = scores.len().div_ceil(10);
    let top = order[..k].iter().filter(|&&i| labels[i]).count();
    (top as f64 / k as f64) / (total as f64 / scores.len() as f64)
}

/// Expected calibration error over `bins` equal-width probability bins: the mean gap
/// between predicted probability and observed rate, weighted by the rows in each bin.
pub fn calibration_error(probabilities: &[f64], labels: &[bool], bins: usize) -> f64 {
    assert_eq!(probabilities.len(), labels.len(), "one label per probability");
    if probabilities.is_empty() {
        return f64::NAN;
    }
    let mut sums = vec![(0.0, 0.0, 0usize); bins.max(1)];
    for (&p, &l) in probabilities.iter().zip(labels) {
        let b = ((p.clamp(0.0, 1.0) * bins as f64) as usize).min(bins - 1);
        sums[b].0 += p;
        sums[b].1 += if l { 1.0 } else { 0.0 };
        sums[b].2 += 1;
    }
    let n = probabilities.len() as f64;
    sums.iter().filter(|s| s.2 > 0).map(|&(p, y, c)| (p - y).abs() / c as f64 * (c as f64 / n)).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auc_counts_ordered_pairs_and_half_of_ties() {
        // Positives at 0.9 and 0.5; negatives at 0.5, 0.2, 0.1: of 6 pairs, 5 ordered and
        // one tie.
        let s = [0.9, 0.5, 0.5, 0.2, 0.1];
        let l = [true, true, false, false, false];
        assert!((auc(&s, &l) - 5.5 / 6.0).abs() < 1e-12);
        assert_eq!(auc(&[0.1, 0.2], &[true, false]), 0.0);
        assert!(auc(&[0.1, 0.2], &[true, true]).is_nan());
    }

    #[test]
    fn average_precision_of_a_perfect_and_an_inverted_ranking() {
        assert_eq!(average_precision(&[0.9, 0.8, 0.1], &[true, true, false]), 1.0);
        // The positive is found last, at precision 1/3.
        assert!((average_precision(&[0.9, 0.8, 0.1], &[false, false, true]) - 1.0 / 3.0).abs() < 1e-12);
    }

    #[test]
    fn lift_takes_the_top_tenth_rounded_up_and_keeps_given_order_on_ties() {
        // 20 rows, 2 positives (rate 0.1); the top 2 hold one: lift 5.
        let mut s = vec![0.0; 20];
        let mut l = vec![false; 20];
        s[0] = 1.0;
        l[0] = true;
        l[19] = true;
        s[1] = 0.5;
        assert!((top_decile_lift(&s, &l) - 5.0).abs() < 1e-12);
        // All tied: the first two rows given are the top tenth.
        let tied = vec![0.3; 20];
        assert!((top_decile_lift(&tied, &l) - 5.0).abs() < 1e-12);
        // 21 rows: the top tenth is 3 rows.
        assert!((top_decile_lift(&[0.0; 21], &[true; 21]) - 1.0).abs() < 1e-12);
    }

    #[test]
    fn calibration_error_is_zero_when_rates_match_and_the_gap_otherwise() {
        let p = [0.25; 4];
        assert!(calibration_error(&p, &[true, false, false, false], 10).abs() < 1e-12);
        assert!((calibration_error(&p, &[true, true, true, true], 10) - 0.75).abs() < 1e-12);
    }
}
