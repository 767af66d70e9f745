//! Rows of a tensor summed into the rows of another by index: the gradient of an embedding
//! lookup (`index_select`), `dst[ids[j]] += src[j]`.
//!
//! candle's `index_add` on CUDA gives each column one thread that walks every index in turn,
//! so a batch of 8,192 tokens is 8,192 dependent steps. Here the indices are grouped on the
//! host (they are the batch's token ids, already there), and each destination row is one block
//! that sums its source rows in index order: parallel over rows, and deterministic.

use super::cpu::{float_dispatch, slice};
use candle_core::{CpuStorage, CustomOp2, Layout, Shape, Tensor};

/// `[dst_rows, d]` with row `i` the sum of the rows `j` of `src` `[ids.len(), d]` that have
/// `ids[j] == i` (in order of `j`), zero elsewhere.
pub(crate) fn scatter_add(src: &Tensor, ids: &[u32], dst_rows: usize) -> candle_core::Result<Tensor> {
    let (n, d) = src.dims2()?;
    if ids.len() != n {
        return Err(candle_core::Error::Msg(format!("scatter-add: {} indices for {n} rows", ids.len())));
    }
    if let Some(&bad) = ids.iter().find(|&&i| i as usize >= dst_rows) {
        return Err(candle_core::Error::Msg(format!("scatter-add: index {bad} outside {dst_rows} rows")));
    }
    if !src.device().is_cuda() {
        let ids = Tensor::from_slice(ids, n, src.device())?;
        return Tensor::zeros((dst_rows, d), src.dtype(), src.device())?.index_add(&ids, src, 0);
    }
    let groups = Groups::of(ids);
    let pack = Tensor::from_vec(groups.pack(), groups.len(), src.device())?;
    src.contiguous()?.apply_op2_no_bwd(&pack, &ScatterAdd { dst_rows, groups: groups.ids.len() })
}

/// The source rows of each destination row, in the order the kernel reads them.
struct Groups {
    /// The distinct destination rows, ascending.
    ids: Vec<u32>,
    /// Where each destination's sources start in `rows` (one more entry than `ids`).
    offsets: Vec<u32>,
    /// Source rows, grouped by destination, ascending within a group.
    rows: Vec<u32>,
}

impl Groups {
    fn of(ids: &[u32]) -> Self {
        let mut order: Vec<u32> = (0..ids.len() as u32).collect();
        // Stable: sources of one destination stay in index order.
        order.sort_by_key(|&j| ids[j as usize]);
        let (mut distinct, mut offsets) = (Vec::new(), Vec::new());
        for (k, &j) in order.iter().enumerate() {
            if distinct.last() != Some(&ids[j as usize]) {
                distinct.push(ids[j as usize]);
                offsets.push(k as u32);
            }
        }
        offsets.push(order.len() as u32);
        Groups { ids: distinct, offsets, rows: order }
    }

    /// `[rows | offsets | ids]`, the layout of the op's second input.
    fn pack(&self) -> Vec<u32> {
        [&self.rows[..], &self.offsets, &self.ids].concat()
    }

    fn len(&self) -> usize {
        self.rows.len() + self.offsets.len() + self.ids.len()
    }
}

/// `CustomOp2(src [n, d], pack u32 [n + 2·groups + 1])` → `[dst_rows, d]`; the pack is a
/// [`Groups`] laid out by [`Groups::pack`].
struct ScatterAdd {
    dst_rows: usize,
    groups: usize,
}

impl ScatterAdd {
    /// `(n, d)`, checked against the pack's length.
    fn dims(&self, sl: &Layout, pl: &Layout) -> candle_core::Result<(usize, usize)> {
        let (n, d) = sl.shape().dims2()?;
        if pl.shape().elem_count() != n + 2 * self.groups + 1 {
            return Err(candle_core::Error::Msg(format!("{}: index pack does not fit {n} rows", self.name())));
        }
        Ok((n, d))
    }
}

impl CustomOp2 for ScatterAdd {
    fn name(&self) -> &'static str {
        "scatter-add-rows"
    }

    fn cpu_fwd(
        &self,
        s: &CpuStorage,
        sl: &Layout,
        p: &CpuStorage,
        pl: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (n, d) = self.dims(sl, pl)?;
        let name = self.name();
        let pack = slice::<u32>(p, pl, name)?;
        let (rows, rest) = pack.split_at(n);
        let (offsets, ids) = rest.split_at(self.groups + 1);
        float_dispatch!(s, name, T => {
            let src = slice::<T>(s, sl, name)?;
            let mut out = vec![T::from_f64(0.0); self.dst_rows * d];
            for (g, &id) in ids.iter().enumerate() {
                let dst = &mut out[id as usize * d..][..d];
                for &j in &rows[offsets[g] as usize..offsets[g + 1] as usize] {
                    dst.iter_mut().zip(&src[j as usize * d..][..d]).for_each(|(o, &x)| *o += x);
                }
            }
            Ok((T::to_cpu_storage_owned(out), Shape::from((self.dst_rows, d))))
        })
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s: &candle_core::CudaStorage,
        sl: &Layout,
        p: &candle_core::CudaStorage,
        pl: &Layout,
    ) -> candle_core::Result<(candle_core::CudaStorage, Shape)> {
        let (n, d) = self.dims(sl, pl)?;
        let out = super::cuda::scatter_add((s, sl), (p, pl), n, self.groups, self.dst_rows, d)?;
        Ok((out, Shape::from((self.dst_rows, d))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn grouped_sums_match_index_add() {
        let dev = Device::Cpu;
        let ids = [3u32, 0, 3, 7, 0, 3, 1];
        let src = Tensor::randn(0f32, 1., (ids.len(), 5), &dev).unwrap();
        let groups = Groups::of(&ids);
        assert_eq!(groups.ids, vec![0, 1, 3, 7]);
        assert_eq!(groups.offsets, vec![0, 2, 3, 6, 7]);
        assert_eq!(groups.rows, vec![1, 4, 6, 0, 2, 5, 3]);
        let pack = Tensor::from_vec(groups.pack(), groups.len(), &dev).unwrap();
        let ours = src.apply_op2_no_bwd(&pack, &ScatterAdd { dst_rows: 9, groups: 4 }).unwrap();
        let theirs = scatter_add(&src, &ids, 9).unwrap();
        // Same sums in the same order: equal to the last bit.
        assert_eq!(ours.to_vec2::<f32>().unwrap(), theirs.to_vec2::<f32>().unwrap());
        assert!(scatter_add(&src, &ids, 7).is_err());
        assert!(scatter_add(&src, &ids[1..], 9).is_err());
    }
}
