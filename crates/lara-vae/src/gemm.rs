//! Thin, deterministic wrapper over `matrixmultiply::sgemm` for row-major matrices, split
//! over the rayon pool along the larger output dimension.
//!
//! Every output element is computed by exactly one call with the same `k` order, so results
//! do not depend on the number of threads.

/// Work (m·n·k) below which a product runs on the calling thread.
const PAR_MIN_WORK: usize = 1 << 18;

#[derive(Clone, Copy)]
struct SendPtr(*mut f32);
unsafe impl Send for SendPtr {}
unsafe impl Sync for SendPtr {}

/// `C (m×n) = A·B + beta·C` where the logical `A` is m×k and `B` is k×n.
///
/// `a_t = false`: `a` is stored row-major m×k; `a_t = true`: `a` is stored row-major k×m
/// (so `A = aᵀ`). Likewise `b_t` for `b` (k×n, or n×k when transposed). `c` is row-major m×n.
#[allow(clippy::too_many_arguments)]
pub fn gemm(m: usize, n: usize, k: usize, a: &[f32], a_t: bool, b: &[f32], b_t: bool, beta: f32, c: &mut [f32]) {
    assert!(a.len() >= m * k && b.len() >= k * n && c.len() >= m * n, "gemm: bad sizes");
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        for v in &mut c[..m * n] {
            *v *= beta;
        }
        return;
    }
    let (rsa, csa) = if a_t { (1isize, m as isize) } else { (k as isize, 1isize) };
    let (rsb, csb) = if b_t { (1isize, k as isize) } else { (n as isize, 1isize) };
    let threads = rayon::current_num_threads().max(1);
    let work = m * n * k;
    let cp = SendPtr(c.as_mut_ptr());
    let ap = a.as_ptr() as usize;
    let bp = b.as_ptr() as usize;
    // SAFETY: the pointers stay inside the asserted bounds; each task writes a disjoint set of
    // rows (or columns) of C.
    let run = move |r0: usize, r1: usize, c0: usize, c1: usize| unsafe {
        let cp = cp;
        matrixmultiply::sgemm(
            r1 - r0,
            k,
            c1 - c0,
            1.0,
            (ap as *const f32).offset(r0 as isize * rsa),
            rsa,
            csa,
            (bp as *const f32).offset(c0 as isize * csb),
            rsb,
            csb,
            beta,
            cp.0.add(r0 * n + c0),
            n as isize,
            1,
        );
    };
    if threads == 1 || work < PAR_MIN_WORK || cfg!(feature = "mm-threading") {
        run(0, m, 0, n);
        return;
    }
    let parts = threads;
    if m >= n {
        let chunk = m.div_ceil(parts).next_multiple_of(8).max(8);
        rayon::scope(|s| {
            let mut r0 = 0;
            while r0 < m {
                let r1 = (r0 + chunk).min(m);
                s.spawn(move |_| run(r0, r1, 0, n));
                r0 = r1;
            }
        });
    } else {
        let chunk = n.div_ceil(parts).next_multiple_of(8).max(8);
        rayon::scope(|s| {
            let mut c0 = 0;
            while c0 < n {
                let c1 = (c0 + chunk).min(n);
                s.spawn(move |_| run(0, m, c0, c1));
                c0 = c1;
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(m: usize, n: usize, k: usize, a: &[f32], a_t: bool, b: &[f32], b_t: bool) -> Vec<f32> {
        let mut c = vec![0.0f32; m * n];
        for i in 0..m {
            for j in 0..n {
                let mut s = 0.0f64;
                for l in 0..k {
                    let av = if a_t { a[l * m + i] } else { a[i * k + l] };
                    let bv = if b_t { b[j * k + l] } else { b[l * n + j] };
                    s += av as f64 * bv as f64;
                }
                c[i * n + j] = s as f32;
            }
        }
        c
    }

    #[test]
    fn matches_naive_all_transposes() {
        for &(m, n, k) in &[(3, 5, 7), (70, 300, 90), (300, 70, 64), (1, 1, 1)] {
            let a: Vec<f32> = (0..m * k).map(|i| ((i * 37 % 101) as f32 - 50.0) / 50.0).collect();
            let b: Vec<f32> = (0..k * n).map(|i| ((i * 53 % 97) as f32 - 48.0) / 48.0).collect();
            for a_t in [false, true] {
                for b_t in [false, true] {
                    let want = naive(m, n, k, &a, a_t, &b, b_t);
                    let mut c = vec![0.0; m * n];
                    gemm(m, n, k, &a, a_t, &b, b_t, 0.0, &mut c);
                    for (x, y) in c.iter().zip(&want) {
                        assert!((x - y).abs() < 1e-3 * (1.0 + y.abs()), "{x} vs {y}");
                    }
                }
            }
        }
    }
}
