//! Steps 4–5 of CoLLaTe in one call: align the detector scores, train the conditional fusion
//! on the presumed-normal windows both models scored, and fuse every window.

use serde::{Deserialize, Serialize};

use crate::align::{AlignMethod, Aligner};
use crate::error::LlmError;
use crate::fusion::{train_fusion, FusionConfig, FusionNet};

/// Settings of [`fuse_scores`].
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CollateConfig {
    pub align: AlignMethod,
    pub fusion: FusionConfig,
}

/// What [`fuse_scores`] returns, one entry per window.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CollateOutput {
    /// Fused score Ŝ (the aligned detector score where the LLM has no score).
    pub fused: Vec<f64>,
    /// The detector score mapped into the LLM domain, ŝ = M(s).
    pub detector_aligned: Vec<f64>,
    /// Weight α on ŝ (1 where the LLM has no score).
    pub alpha: Vec<f64>,
    pub aligner: Aligner,
    /// `None` when too few presumed-normal windows had both scores: then α = 0.5 wherever the
    /// LLM answered (plain average of the aligned scores).
    pub net: Option<FusionNet>,
}

/// Align and fuse. `detector_scores[i]`, `latents[i]` (d_z ≤ 32), `llm_scores[i]` (`None` = not
/// asked or missing) for every window i; `reference[i]` marks windows presumed normal (e.g. the
/// random calibration sample of [`crate::select::select_windows`]; never test labels).
pub fn fuse_scores(
    detector_scores: &[f64],
    latents: &[Vec<f64>],
    llm_scores: &[Option<f64>],
    reference: &[bool],
    config: &CollateConfig,
) -> Result<CollateOutput, LlmError> {
    let n = detector_scores.len();
    if latents.len() != n || llm_scores.len() != n || reference.len() != n {
        return Err(LlmError::InvalidInput(format!(
            "fuse_scores: {n} detector scores, {} latents, {} LLM scores, {} reference flags",
            latents.len(),
            llm_scores.len(),
            reference.len()
        )));
    }
    let seen: Vec<usize> = (0..n).filter(|&i| llm_scores[i].is_some_and(f64::is_finite)).collect();
    if seen.is_empty() {
        return Err(LlmError::InvalidInput("no window has an LLM score: nothing to align to".into()));
    }
    let det_seen: Vec<f64> = seen.iter().map(|&i| detector_scores[i]).collect();
    let llm_seen: Vec<f64> = seen.iter().filter_map(|&i| llm_scores[i]).collect();
    let aligner = Aligner::fit(config.align, detector_scores, &det_seen, &llm_seen)?;
    let detector_aligned = aligner.apply_all(detector_scores);
    let llm_nan: Vec<f64> = llm_scores.iter().map(|s| s.unwrap_or(f64::NAN)).collect();
    let net = match train_fusion(latents, &detector_aligned, &llm_nan, reference, &config.fusion) {
        Ok(net) => Some(net),
        Err(e) => {
            tracing::warn!(error = %e, "fusion not trained; averaging the aligned scores where the LLM answered");
            None
        }
    };
    let mut alpha = vec![1.0; n];
    let mut fused = detector_aligned.clone();
    for &i in &seen {
        let a = net.as_ref().map_or(0.5, |m| m.weight(&latents[i]));
        alpha[i] = a;
        fused[i] = a * detector_aligned[i] + (1.0 - a) * llm_nan[i];
    }
    Ok(CollateOutput { fused, detector_aligned, alpha, aligner, net })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fuses_with_and_without_enough_reference_windows() {
        let n = 60;
        let det: Vec<f64> = (0..n).map(|i| (i as f64 * 0.37).sin() + if i == 40 { 5.0 } else { 0.0 }).collect();
        let lat: Vec<Vec<f64>> = (0..n).map(|i| vec![(i % 3) as f64, (i as f64).cos()]).collect();
        let llm: Vec<Option<f64>> = (0..n).map(|i| (i % 4 == 0).then_some(if i == 40 { 0.9 } else { 0.1 })).collect();
        let refs: Vec<bool> = (0..n).map(|i| i % 4 == 0 && i != 40).collect();
        let out = fuse_scores(&det, &lat, &llm, &refs, &CollateConfig::default()).unwrap();
        assert!(out.net.is_some());
        assert_eq!(out.fused.len(), n);
        assert_eq!(out.alpha[1], 1.0);
        assert!(out.fused.iter().all(|x| x.is_finite() && (0.0..=1.0).contains(x)));
        let top = out.fused.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).unwrap().0;
        assert_eq!(top, 40);
        let out = fuse_scores(&det, &lat, &llm, &vec![false; n], &CollateConfig::default()).unwrap();
        assert!(out.net.is_none() && out.alpha[0] == 0.5);
        assert!(fuse_scores(&det, &lat, &vec![None; n], &refs, &CollateConfig::default()).is_err());
        assert!(fuse_scores(&det[..3], &lat, &llm, &refs, &CollateConfig::default()).is_err());
    }
}

/// Label-free reliability gate (beyond the paper): does the LLM, on average, score the
/// detector's most suspicious windows (`top`) above the random calibration windows
/// (`random`)? If not, its scores carry no signal the detector lacks, and fusing them can only
/// reorder the detector's ranking at random, so the caller should keep the aligned detector
/// scores alone. `None` when either group has no usable LLM answer.
pub fn llm_separates_suspicious_windows(llm_scores: &[Option<f64>], top: &[usize], random: &[usize]) -> Option<bool> {
    let mean = |idx: &[usize]| {
        let v: Vec<f64> = idx.iter().filter_map(|&i| llm_scores.get(i).copied().flatten()).collect();
        (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
    };
    Some(mean(top)? > mean(random)?)
}

#[cfg(test)]
mod gate_tests {
    use super::llm_separates_suspicious_windows as gate;

    #[test]
    fn gate_opens_only_when_the_llm_ranks_suspicious_windows_higher() {
        let s = vec![Some(0.9), Some(0.8), Some(0.1), Some(0.2), None];
        assert_eq!(gate(&s, &[0, 1], &[2, 3]), Some(true));
        assert_eq!(gate(&s, &[2, 3], &[0, 1]), Some(false));
        // Equal means carry no signal.
        let flat = vec![Some(0.5); 4];
        assert_eq!(gate(&flat, &[0, 1], &[2, 3]), Some(false));
        assert_eq!(gate(&s, &[4], &[2]), None);
    }
}
