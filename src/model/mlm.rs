//! The transformer masked-language model: embeddings, post-LN blocks with optional
//! language-specific adapters, and a tied output projection.

use super::config::ModelConfig;
use super::layers::dropout;
use super::registry::{LayerSlot, ParamGroup, ParamInfo, ParamRegistry};
use crate::batch::MlmBatch;
use crate::error::{Error, Result};
use crate::kernels::{wide, Kernels, Precision};
use crate::rng::{stream, Purpose};
use candle_core::{DType, Device, Tensor};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal};

mod tape;

/// Registry indices of the embedding parameters.
#[derive(Clone, Debug)]
struct EmbeddingIds {
    tok: usize,
    pos: usize,
    lang: Option<usize>,
    ln_w: usize,
    ln_b: usize,
    out_bias: usize,
}

/// Registry indices of one linear map.
#[derive(Clone, Copy, Debug)]
struct LinearIds {
    w: usize,
    b: usize,
}

/// Registry indices of one transformer block.
#[derive(Clone, Debug)]
struct BlockIds {
    q: LinearIds,
    k: LinearIds,
    v: LinearIds,
    o: LinearIds,
    ln1: LinearIds,
    fc1: LinearIds,
    fc2: LinearIds,
    ln2: LinearIds,
}

/// Registry indices of one bottleneck adapter: `h + up(gelu(down(h)))`.
#[derive(Clone, Copy, Debug)]
struct AdapterIds {
    down: LinearIds,
    up: LinearIds,
}

/// The adapters of one language in one block: after attention and after the feed-forward.
#[derive(Clone, Copy, Debug)]
struct BlockAdapters {
    attn: AdapterIds,
    ffn: AdapterIds,
}

/// A post-LayerNorm transformer encoder trained with masked language modelling.
///
/// Parameters live in a [`ParamRegistry`]; the forward pass takes them as a slice indexed by
/// the registry (`*_with` methods), so probes and the meta step can run the model on other
/// values of the same parameters (θ′ = θ − α∇θ, say) without copying the model.
///
/// ```
/// use interference::model::{MlmModel, ModelConfig};
/// use interference::LangSet;
/// use candle_core::{DType, Device};
/// let config = ModelConfig {
///     vocab_size: 50, d_model: 16, layers: 1, heads: 2, d_ff: 32, max_len: 16,
///     dropout: 0.0, lang_embeddings: true, adapter_bottleneck: 4,
///     languages: LangSet::parse(&["en", "sw"]).unwrap(), ln_eps: 1e-5,
/// };
/// let model = MlmModel::new(config, 0, DType::F32, &Device::Cpu).unwrap();
/// assert!(model.registry().index("adapters.sw.0.ffn.up.weight").is_ok());
/// ```
#[derive(Clone, Debug)]
pub struct MlmModel {
    config: ModelConfig,
    registry: ParamRegistry,
    emb: EmbeddingIds,
    blocks: Vec<BlockIds>,
    adapters: Vec<Vec<BlockAdapters>>,
    device: Device,
    dtype: DType,
    kernels: Kernels,
    precision: Precision,
}

/// Per token, whether it is padding (masked out as a key); `None` for batches without padding.
fn padding_flags(batch: &MlmBatch) -> Option<Vec<bool>> {
    batch.pad.map(|pad| batch.tokens.iter().map(|&t| t == pad).collect())
}

/// Registers parameters with initial values drawn from one seeded stream.
struct Initialiser<'a, R: Rng> {
    registry: &'a mut ParamRegistry,
    rng: R,
    dtype: DType,
    device: &'a Device,
}

impl<R: Rng> Initialiser<'_, R> {
    fn push(
        &mut self,
        name: String,
        slot: LayerSlot,
        group: &ParamGroup,
        shape: &[usize],
        init: Init,
    ) -> Result<usize> {
        let n: usize = shape.iter().product();
        let values: Vec<f64> = match init {
            Init::Normal(std) => {
                let normal = Normal::new(0.0, std).map_err(|e| Error::Config(format!("init std {std}: {e}")))?;
                (0..n).map(|_| normal.sample(&mut self.rng)).collect()
            }
            Init::Const(c) => vec![c; n],
        };
        let t = Tensor::from_vec(values, shape, self.device)?.to_dtype(self.dtype)?;
        self.registry.push(ParamInfo { name, slot, group: group.clone() }, t)
    }

    fn linear(
        &mut self,
        prefix: &str,
        slot: LayerSlot,
        group: &ParamGroup,
        out: usize,
        inp: usize,
        std: f64,
    ) -> Result<LinearIds> {
        Ok(LinearIds {
            w: self.push(format!("{prefix}.weight"), slot, group, &[out, inp], Init::Normal(std))?,
            b: self.push(format!("{prefix}.bias"), slot, group, &[out], Init::Const(0.0))?,
        })
    }

    fn norm(&mut self, prefix: &str, slot: LayerSlot, d: usize) -> Result<LinearIds> {
        Ok(LinearIds {
            w: self.push(format!("{prefix}.weight"), slot, &ParamGroup::Shared, &[d], Init::Const(1.0))?,
            b: self.push(format!("{prefix}.bias"), slot, &ParamGroup::Shared, &[d], Init::Const(0.0))?,
        })
    }
}

/// How a parameter starts.
#[derive(Clone, Copy)]
enum Init {
    Normal(f64),
    Const(f64),
}

/// Standard deviation of the initial weights (BERT/XLM).
const INIT_STD: f64 = 0.02;
/// Adapters start near the identity: their up-projection is tiny.
const ADAPTER_UP_STD: f64 = 1e-3;

impl MlmModel {
    /// A freshly initialised model; the same `seed` gives the same weights.
    pub fn new(config: ModelConfig, seed: u64, dtype: DType, device: &Device) -> Result<Self> {
        config.validate()?;
        crate::device::retain_freed_memory();
        crate::device::retain_freed_device_memory(device)?;
        let (d, shared) = (config.d_model, ParamGroup::Shared);
        let mut registry = ParamRegistry::new();
        let mut init = Initialiser { registry: &mut registry, rng: stream(seed, Purpose::Init, 0), dtype, device };
        let e = LayerSlot::Embeddings;
        let tok = init.push("tok.weight".into(), e, &shared, &[config.vocab_size, d], Init::Normal(INIT_STD))?;
        let pos = init.push("pos.weight".into(), e, &shared, &[config.max_len, d], Init::Normal(INIT_STD))?;
        let lang = if config.lang_embeddings {
            Some(init.push("lang.weight".into(), e, &shared, &[config.languages.len(), d], Init::Normal(INIT_STD))?)
        } else {
            None
        };
        let emb_ln = init.norm("emb_ln", e, d)?;
        let mut blocks = Vec::with_capacity(config.layers);
        for i in 0..config.layers {
            let s = LayerSlot::Layer(i);
            let p = format!("layers.{i}");
            blocks.push(BlockIds {
                q: init.linear(&format!("{p}.attn.q"), s, &shared, d, d, INIT_STD)?,
                k: init.linear(&format!("{p}.attn.k"), s, &shared, d, d, INIT_STD)?,
                v: init.linear(&format!("{p}.attn.v"), s, &shared, d, d, INIT_STD)?,
                o: init.linear(&format!("{p}.attn.o"), s, &shared, d, d, INIT_STD)?,
                ln1: init.norm(&format!("{p}.ln1"), s, d)?,
                fc1: init.linear(&format!("{p}.fc1"), s, &shared, config.d_ff, d, INIT_STD)?,
                fc2: init.linear(&format!("{p}.fc2"), s, &shared, d, config.d_ff, INIT_STD)?,
                ln2: init.norm(&format!("{p}.ln2"), s, d)?,
            });
        }
        let mut adapters = Vec::new();
        if config.has_adapters() {
            let r = config.adapter_bottleneck;
            for l in config.languages.iter() {
                let group = ParamGroup::Specific(l.clone());
                let mut per_layer = Vec::with_capacity(config.layers);
                for i in 0..config.layers {
                    let s = LayerSlot::Layer(i);
                    let mut adapter = |kind: &str| -> Result<AdapterIds> {
                        let p = format!("adapters.{l}.{i}.{kind}");
                        Ok(AdapterIds {
                            down: init.linear(&format!("{p}.down"), s, &group, r, d, INIT_STD)?,
                            up: init.linear(&format!("{p}.up"), s, &group, d, r, ADAPTER_UP_STD)?,
                        })
                    };
                    per_layer.push(BlockAdapters { attn: adapter("attn")?, ffn: adapter("ffn")? });
                }
                adapters.push(per_layer);
            }
        }
        let out_bias =
            init.push("out_bias".into(), LayerSlot::Output, &shared, &[config.vocab_size], Init::Const(0.0))?;
        let emb = EmbeddingIds { tok, pos, lang, ln_w: emb_ln.w, ln_b: emb_ln.b, out_bias };
        Ok(MlmModel {
            config,
            registry,
            emb,
            blocks,
            adapters,
            device: device.clone(),
            dtype,
            kernels: Kernels::default(),
            precision: Precision::default(),
        })
    }

    /// The model's configuration.
    pub fn config(&self) -> &ModelConfig {
        &self.config
    }

    /// The parameters.
    pub fn registry(&self) -> &ParamRegistry {
        &self.registry
    }

    /// The device the parameters live on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// The parameters' dtype.
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// The implementation of the hot operations the forward pass uses (fused by default).
    pub fn kernels(&self) -> Kernels {
        self.kernels
    }

    /// Switches the implementation of the hot operations; the parameters are untouched.
    pub fn set_kernels(&mut self, kernels: Kernels) {
        self.kernels = kernels;
    }

    /// The dtype of the matrix products (fp32, the parameters' own, by default).
    pub fn precision(&self) -> Precision {
        self.precision
    }

    /// Switches the dtype of the matrix products; the parameters (the master weights) and
    /// their gradients keep theirs.
    pub fn set_precision(&mut self, precision: Precision) {
        self.precision = precision;
    }

    /// The implementation the forward pass runs: the reference ops under bf16 (the fused
    /// kernels are f32/f64 only), the chosen kernels otherwise.
    fn ops(&self) -> Kernels {
        match self.precision {
            Precision::Bf16 => Kernels::Reference,
            Precision::Fp32 => self.kernels,
        }
    }

    /// Whether [`MlmModel::loss_and_grads`] takes the hand-written pass for `params`: on the
    /// fused kernels, in fp32, or in bf16 over f32 master weights.
    fn hand_written(&self, params: &[Tensor]) -> bool {
        params.first().is_some_and(|p| {
            let precision_fits = self.precision == Precision::Fp32 || p.dtype() == DType::F32;
            precision_fits && self.kernels.hand_written_for(p)
        })
    }

    /// `x · wᵀ + b` with operands in the model's precision.
    fn linear(&self, x: &Tensor, w: &Tensor, b: &Tensor) -> Result<Tensor> {
        let c = |t: &Tensor| self.precision.operand(t);
        self.ops().linear(&c(x)?, &c(w)?, &c(b)?)
    }

    /// Mean MLM cross-entropy of `batch` with the model's own parameters; dropout is on when
    /// `rng` is given (its masks are drawn from it, so runs are reproducible).
    pub fn loss(&self, batch: &MlmBatch, rng: Option<&mut ChaCha8Rng>) -> Result<Tensor> {
        self.loss_with(&self.registry.tensors(), batch, rng)
    }

    /// Mean MLM cross-entropy of `batch` with parameter values `params` (registry order).
    pub fn loss_with(&self, params: &[Tensor], batch: &MlmBatch, rng: Option<&mut ChaCha8Rng>) -> Result<Tensor> {
        let logits = self.logits_with(params, batch, rng)?;
        let targets = Tensor::from_slice(&batch.targets, batch.targets.len(), &self.device)?;
        self.ops().cross_entropy(&logits, &targets)
    }

    /// Output logits `[positions, vocab]` at the batch's predicted positions.
    pub fn logits_with(&self, params: &[Tensor], batch: &MlmBatch, rng: Option<&mut ChaCha8Rng>) -> Result<Tensor> {
        let hidden = self.hidden_with(params, batch, rng)?;
        let positions = Tensor::from_slice(&batch.positions, batch.positions.len(), &self.device)?;
        let picked = hidden.index_select(&positions, 0)?;
        Ok(wide(&self.linear(&picked, &params[self.emb.tok], &params[self.emb.out_bias])?)?)
    }

    /// Final hidden states `[rows·cols, d]` of the encoder for `batch`.
    pub fn hidden_with(&self, params: &[Tensor], batch: &MlmBatch, mut rng: Option<&mut ChaCha8Rng>) -> Result<Tensor> {
        self.check_batch(params, batch)?;
        if let (Precision::Bf16, Some(p)) = (self.precision, params.first()) {
            if p.dtype() != DType::F32 {
                return Err(Error::Config(format!(
                    "precision bf16 needs f32 parameters (the master weights), not {:?}",
                    p.dtype()
                )));
            }
        }
        let lang = self.config.languages.index(&batch.lang)?;
        let x = self.embeddings(params, batch, Some(lang))?;
        let p = |i: usize| &params[i];
        let x = self.ops().layer_norm(&x, None, p(self.emb.ln_w), p(self.emb.ln_b), self.config.ln_eps)?;
        let mut x = dropout(&x, self.config.dropout, rng.as_deref_mut())?;
        let s = batch.cols;
        let padded = padding_flags(batch);
        for (i, block) in self.blocks.iter().enumerate() {
            let adapters = self.adapters.get(lang).map(|a| a[i]);
            x = self.block(params, block, adapters, &x, s, padded.as_deref(), rng.as_deref_mut())?;
        }
        Ok(x)
    }

    /// The summed token, position (and, given a `lang`, language) embeddings `[batch·seq, d]`
    /// before their LayerNorm.
    fn embeddings(&self, params: &[Tensor], batch: &MlmBatch, lang: Option<usize>) -> Result<Tensor> {
        let (b, s, d) = (batch.rows, batch.cols, self.config.d_model);
        let ids = Tensor::from_slice(&batch.tokens, b * s, &self.device)?;
        let mut x = params[self.emb.tok].index_select(&ids, 0)?.reshape((b, s, d))?;
        x = x.broadcast_add(&params[self.emb.pos].narrow(0, 0, s)?)?;
        if let (Some(l), Some(lang)) = (self.emb.lang, lang) {
            x = x.broadcast_add(&params[l].narrow(0, lang, 1)?)?;
        }
        Ok(x.reshape((b * s, d))?)
    }

    /// One post-LN block: `LN(x + A(attn(x)))`, then `LN(x + A(ffn(x)))`, where `A` is the
    /// language's adapter (identity without adapters); `x` is `[batch·seq, d]`.
    #[allow(clippy::too_many_arguments)]
    fn block(
        &self,
        params: &[Tensor],
        ids: &BlockIds,
        adapters: Option<BlockAdapters>,
        x: &Tensor,
        seq: usize,
        padded: Option<&[bool]>,
        mut rng: Option<&mut ChaCha8Rng>,
    ) -> Result<Tensor> {
        let (k, eps) = (self.ops(), self.config.ln_eps);
        let lin = |t: &Tensor, l: LinearIds| self.linear(t, &params[l.w], &params[l.b]);
        let (q, key, v) = (lin(x, ids.q)?, lin(x, ids.k)?, lin(x, ids.v)?);
        let ctx = k.attention(&q, &key, &v, self.config.heads, seq, padded)?;
        let mut a = dropout(&lin(&ctx, ids.o)?, self.config.dropout, rng.as_deref_mut())?;
        if let Some(ad) = adapters {
            a = self.adapter(params, ad.attn, &a)?;
        }
        let x = k.layer_norm(x, Some(&a), &params[ids.ln1.w], &params[ids.ln1.b], eps)?;
        let f = lin(&k.gelu(&lin(&x, ids.fc1)?)?, ids.fc2)?;
        let mut f = dropout(&f, self.config.dropout, rng)?;
        if let Some(ad) = adapters {
            f = self.adapter(params, ad.ffn, &f)?;
        }
        k.layer_norm(&x, Some(&f), &params[ids.ln2.w], &params[ids.ln2.b], eps)
    }

    /// A bottleneck adapter with its own residual: `h + up(gelu(down(h)))`.
    fn adapter(&self, params: &[Tensor], ids: AdapterIds, h: &Tensor) -> Result<Tensor> {
        let down = self.ops().gelu(&self.linear(h, &params[ids.down.w], &params[ids.down.b])?)?;
        // The residual sum in f32 under mixed precision (`wide` is the identity otherwise).
        Ok((wide(h)? + wide(&self.linear(&down, &params[ids.up.w], &params[ids.up.b])?)?)?)
    }

    /// Rejects batches the model cannot run, naming the value at fault.
    fn check_batch(&self, params: &[Tensor], batch: &MlmBatch) -> Result<()> {
        if params.len() != self.registry.len() {
            return Err(Error::Shape(format!(
                "{} parameter tensors given, the model has {}",
                params.len(),
                self.registry.len()
            )));
        }
        if batch.cols > self.config.max_len {
            return Err(Error::Shape(format!(
                "sequence length {} exceeds max_len {}",
                batch.cols, self.config.max_len
            )));
        }
        if batch.rows * batch.cols != batch.tokens.len() || batch.positions.len() != batch.targets.len() {
            return Err(Error::Shape(format!(
                "batch of {}×{} has {} tokens, {} positions and {} targets",
                batch.rows,
                batch.cols,
                batch.tokens.len(),
                batch.positions.len(),
                batch.targets.len()
            )));
        }
        let vocab = self.config.vocab_size as u32;
        if let Some(id) = batch.tokens.iter().chain(&batch.targets).find(|&&t| t >= vocab) {
            return Err(Error::Shape(format!("token id {id} is outside the vocabulary of {vocab}")));
        }
        if let Some(p) = batch.positions.iter().find(|&&p| p as usize >= batch.tokens.len()) {
            return Err(Error::Shape(format!("position {p} is outside the batch of {} tokens", batch.tokens.len())));
        }
        Ok(())
    }
}
