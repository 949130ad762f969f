//! One forward step over a batch of sequences from any tenants.
//!
//! Rows of the batch are the new tokens of every sequence, laid end to end
//! (`[N, hidden]`). Sequences of one tenant are adjacent (the scheduler keeps
//! them sorted), so each tenant owns one contiguous row range, a [`Group`].
//! Per projection, the base weight multiplies **all** rows at once (the base
//! is read once per step for the whole batch), then each group's delta term
//! is added for its rows from the compressed form ([`DeltaOp`]); a weight the
//! tenant carries in full replaces the base product for its rows. Norms and
//! the embedding use the tenant's carried tensors where it has them.
//! Attention runs per sequence against that sequence's own KV cache.
//!
//! It computes what [`llama_model::Llama::forward_with`] computes for base +
//! Δ̂ merged, up to float rounding: `x·W + x·Δ̂` instead of `x·(W + Δ̂)`.

use burn::tensor::activation::softmax;
use burn::tensor::module::embedding;
use burn::tensor::{backend::Backend, Bool, Int, Tensor, TensorData};
use llama_model::rope::RotaryEmbedding;
use llama_model::LinearWeight;

use super::payload::DeltaOp;
use super::tenant::{Base, Tenant, TenantLinear};

/// Keys and values of one sequence, per layer: `[1, kv, t, d]` each.
#[derive(Debug, Default)]
pub struct SeqKv<B: Backend> {
    layers: Vec<Option<(Tensor<B, 4>, Tensor<B, 4>)>>,
    len: usize,
}

impl<B: Backend> SeqKv<B> {
    /// An empty cache for `num_layers` layers.
    pub fn new(num_layers: usize) -> Self {
        Self {
            layers: (0..num_layers).map(|_| None).collect(),
            len: 0,
        }
    }
    /// Tokens cached.
    pub fn len(&self) -> usize {
        self.len
    }
    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// One sequence's part of a step: its tenant (`None` = the base), its new
/// tokens and its cache.
pub struct StepInput<'a, B: Backend> {
    /// The tenant, or `None` for the base model itself.
    pub tenant: Option<&'a Tenant<B>>,
    /// New tokens (at least one).
    pub tokens: &'a [u32],
    /// The sequence's cache, extended by this step.
    pub kv: &'a mut SeqKv<B>,
}

/// A contiguous row range belonging to one tenant.
struct Group<'a, B: Backend> {
    tenant: Option<&'a Tenant<B>>,
    start: usize,
    len: usize,
}

impl<B: Backend> Clone for Group<'_, B> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<B: Backend> Copy for Group<'_, B> {}

/// What a tenant does to one projection.
enum Change<'a, B: Backend> {
    Replace(&'a LinearWeight<B>),
    Delta(&'a DeltaOp<B>),
}

fn change<'a, B: Backend>(t: &'a Tenant<B>, name: &str) -> Option<Change<'a, B>> {
    match t.linears.get(name)? {
        TenantLinear::Replace(w) => Some(Change::Replace(w)),
        TenantLinear::Delta(d) => Some(Change::Delta(d)),
    }
}

fn same<B: Backend>(a: Option<&Tenant<B>>, b: Option<&Tenant<B>>) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(a), Some(b)) => std::ptr::eq(a, b),
        _ => false,
    }
}

/// HF names of one block's weights.
struct LayerNames {
    q: String,
    k: String,
    v: String,
    o: String,
    gate: String,
    up: String,
    down: String,
    input_norm: String,
    post_norm: String,
}

impl LayerNames {
    fn new(i: usize) -> Self {
        let p = format!("model.layers.{i}");
        Self {
            q: format!("{p}.self_attn.q_proj.weight"),
            k: format!("{p}.self_attn.k_proj.weight"),
            v: format!("{p}.self_attn.v_proj.weight"),
            o: format!("{p}.self_attn.o_proj.weight"),
            gate: format!("{p}.mlp.gate_proj.weight"),
            up: format!("{p}.mlp.up_proj.weight"),
            down: format!("{p}.mlp.down_proj.weight"),
            input_norm: format!("{p}.input_layernorm.weight"),
            post_norm: format!("{p}.post_attention_layernorm.weight"),
        }
    }
}

/// Runs one step and returns the logits of every sequence's last new token
/// (`vocab` values each, in input order).
///
/// # Panics
/// If an input has no tokens (the scheduler never builds one).
pub fn step<B: Backend>(base: &Base<B>, inputs: &mut [StepInput<'_, B>]) -> Vec<Vec<f32>> {
    let device = base.model.device();
    let config = base.config();
    let lens: Vec<usize> = inputs.iter().map(|i| i.tokens.len()).collect();
    assert!(
        lens.iter().all(|&l| l > 0),
        "every sequence needs a new token"
    );
    let n: usize = lens.iter().sum();
    let offsets: Vec<usize> = lens
        .iter()
        .scan(0, |acc, &l| {
            let o = *acc;
            *acc += l;
            Some(o)
        })
        .collect();
    let row_groups = groups(inputs.iter().map(|i| i.tenant).zip(lens.iter().copied()));
    let last_groups = groups(inputs.iter().map(|i| i.tenant).zip(std::iter::repeat(1)));

    // Embedding.
    let ids: Vec<i64> = inputs
        .iter()
        .flat_map(|i| i.tokens.iter().map(|&t| i64::from(t)))
        .collect();
    let tokens = Tensor::<B, 2, Int>::from_data(TensorData::new(ids, [1, n]), &device);
    let h = config.hidden_size;
    let mut x: Tensor<B, 2> = if row_groups
        .iter()
        .all(|g| g.tenant.is_none_or(|t| t.embed.is_none()))
    {
        embedding(base.model.embed_tokens.val(), tokens).reshape([n, h])
    } else {
        let parts = row_groups
            .iter()
            .map(|g| {
                let w = g
                    .tenant
                    .and_then(|t| t.embed.clone())
                    .unwrap_or_else(|| base.model.embed_tokens.val());
                embedding(w, tokens.clone().narrow(1, g.start, g.len)).reshape([g.len, h])
            })
            .collect();
        Tensor::cat(parts, 0)
    };

    let (nh, nkv, d) = (
        config.num_attention_heads,
        config.num_key_value_heads,
        config.head_dim,
    );
    for (li, layer) in base.model.layers.iter().enumerate() {
        let names = LayerNames::new(li);
        let eps = layer.input_layernorm.eps;
        let hn = rms_norm(
            x.clone(),
            &names.input_norm,
            layer.input_layernorm.weight.val(),
            eps,
            &row_groups,
        );
        let q = project(&names.q, &layer.self_attn.q_proj, hn.clone(), &row_groups);
        let k = project(&names.k, &layer.self_attn.k_proj, hn.clone(), &row_groups);
        let v = project(&names.v, &layer.self_attn.v_proj, hn, &row_groups);
        let mut outs = Vec::with_capacity(inputs.len());
        for (j, input) in inputs.iter_mut().enumerate() {
            let (off, s) = (offsets[j], lens[j]);
            let past = input.kv.len;
            let qj = q
                .clone()
                .narrow(0, off, s)
                .reshape([1, s, nh, d])
                .swap_dims(1, 2);
            let kj = k
                .clone()
                .narrow(0, off, s)
                .reshape([1, s, nkv, d])
                .swap_dims(1, 2);
            let vj = v
                .clone()
                .narrow(0, off, s)
                .reshape([1, s, nkv, d])
                .swap_dims(1, 2);
            let positions = Tensor::<B, 1, Int>::arange(past as i64..(past + s) as i64, &device)
                .reshape([1, s]);
            let (cos, sin) = base.rope.cos_sin(positions);
            let qj = RotaryEmbedding::apply(qj, &cos, &sin);
            let kj = RotaryEmbedding::apply(kj, &cos, &sin);
            let (k_all, v_all) = match input.kv.layers[li].take() {
                Some((kc, vc)) => (Tensor::cat(vec![kc, kj], 2), Tensor::cat(vec![vc, vj], 2)),
                None => (kj, vj),
            };
            outs.push(attention(
                qj,
                k_all.clone(),
                v_all.clone(),
                past,
                (nh, nkv, d),
            ));
            input.kv.layers[li] = Some((k_all, v_all));
        }
        let attn = Tensor::cat(outs, 0);
        let o = project(&names.o, &layer.self_attn.o_proj, attn, &row_groups);
        let mid = x.add(o);
        let hn = rms_norm(
            mid.clone(),
            &names.post_norm,
            layer.post_attention_layernorm.weight.val(),
            eps,
            &row_groups,
        );
        let gate = project(&names.gate, &layer.mlp.gate_proj, hn.clone(), &row_groups);
        let up = project(&names.up, &layer.mlp.up_proj, hn, &row_groups);
        // silu(g)·u as g / (1 + e^(−g)) · u, the model's own formula.
        let act = gate.clone().div(gate.neg().exp().add_scalar(1.0)).mul(up);
        let down = project(&names.down, &layer.mlp.down_proj, act, &row_groups);
        x = mid.add(down);
    }
    for (input, &s) in inputs.iter_mut().zip(&lens) {
        input.kv.len += s;
    }

    // Last new token of every sequence → final norm → head.
    let last: Vec<i64> = offsets
        .iter()
        .zip(&lens)
        .map(|(&o, &l)| (o + l - 1) as i64)
        .collect();
    let m = last.len();
    let idx = Tensor::<B, 1, Int>::from_data(TensorData::new(last, [m]), &device);
    let xl = x.select(0, idx);
    let xl = rms_norm(
        xl,
        "model.norm.weight",
        base.model.norm.weight.val(),
        base.model.norm.eps,
        &last_groups,
    );
    let logits = project_with(&base.head, xl, &last_groups, |t| match &t.head {
        Some(w) => Some(Change::Replace(w)),
        None => change(t, "lm_head.weight"),
    });
    let vocab = config.vocab_size;
    let host: Vec<f32> = logits
        .into_data()
        .convert::<f32>()
        .to_vec()
        .unwrap_or_default();
    host.chunks_exact(vocab).map(<[f32]>::to_vec).collect()
}

fn groups<'a, B: Backend>(
    rows: impl Iterator<Item = (Option<&'a Tenant<B>>, usize)>,
) -> Vec<Group<'a, B>> {
    let mut out: Vec<Group<'a, B>> = Vec::new();
    let mut start = 0;
    for (tenant, len) in rows {
        match out.last_mut() {
            Some(g) if same(g.tenant, tenant) => g.len += len,
            _ => out.push(Group { tenant, start, len }),
        }
        start += len;
    }
    out
}

/// RMSNorm over rows `[N, hidden]`, with each group's carried weight where it has one.
fn rms_norm<B: Backend>(
    x: Tensor<B, 2>,
    name: &str,
    base_weight: Tensor<B, 1>,
    eps: f64,
    groups: &[Group<'_, B>],
) -> Tensor<B, 2> {
    let [_, h] = x.dims();
    let rms = x.clone().square().mean_dim(1).add_scalar(eps).sqrt();
    let normed = x.div(rms);
    fn own<'t, B: Backend>(g: &Group<'t, B>, name: &str) -> Option<&'t Tensor<B, 1>> {
        g.tenant.and_then(|t| t.norms.get(name))
    }
    if groups.iter().all(|g| own(g, name).is_none()) {
        return normed.mul(base_weight.reshape([1, h]));
    }
    let rows = groups
        .iter()
        .map(|g| {
            own(g, name)
                .cloned()
                .unwrap_or_else(|| base_weight.clone())
                .reshape([1, h])
                .expand([g.len, h])
        })
        .collect();
    normed.mul(Tensor::cat(rows, 0))
}

fn project<B: Backend>(
    name: &str,
    base_w: &LinearWeight<B>,
    x: Tensor<B, 2>,
    groups: &[Group<'_, B>],
) -> Tensor<B, 2> {
    project_with(base_w, x, groups, |t| change(t, name))
}

/// `x·W_base` for every row, then each group's change for its rows.
fn project_with<'a, B: Backend>(
    base_w: &LinearWeight<B>,
    x: Tensor<B, 2>,
    groups: &[Group<'a, B>],
    lookup: impl Fn(&'a Tenant<B>) -> Option<Change<'a, B>>,
) -> Tensor<B, 2> {
    let mut y = base_w.forward(x.clone());
    let [_, out_f] = y.dims();
    let [_, in_f] = x.dims();
    let mut host_ops: Vec<(&DeltaOp<B>, Group<'a, B>)> = Vec::new();
    for g in groups {
        let Some(change) = g.tenant.and_then(&lookup) else {
            continue;
        };
        let rows = g.start..g.start + g.len;
        match change {
            Change::Replace(w) => {
                let part = w.forward(x.clone().narrow(0, g.start, g.len));
                y = y.slice_assign([rows, 0..out_f], part);
            }
            Change::Delta(op) => match op.dense() {
                Some(dense) => {
                    let part = y
                        .clone()
                        .narrow(0, g.start, g.len)
                        .add(dense.forward(x.clone().narrow(0, g.start, g.len)));
                    y = y.slice_assign([rows, 0..out_f], part);
                }
                None => host_ops.push((op, *g)),
            },
        }
    }
    if host_ops.is_empty() {
        return y;
    }
    let device = y.device();
    let n = y.dims()[0];
    let xs: Vec<f32> = x.into_data().convert::<f32>().to_vec().unwrap_or_default();
    let mut ys: Vec<f32> = y.into_data().convert::<f32>().to_vec().unwrap_or_default();
    for (op, g) in host_ops {
        op.add_host(
            &xs[g.start * in_f..(g.start + g.len) * in_f],
            &mut ys[g.start * out_f..(g.start + g.len) * out_f],
            g.len,
        );
    }
    Tensor::from_data(TensorData::new(ys, [n, out_f]), &device)
}

/// Causal attention of one sequence's `s` new queries over its `past + s` keys:
/// `q` `[1, h, s, d]`, `k`, `v` `[1, kv, t, d]`; returns `[s, h·d]`.
fn attention<B: Backend>(
    q: Tensor<B, 4>,
    k: Tensor<B, 4>,
    v: Tensor<B, 4>,
    past: usize,
    (h, kv, d): (usize, usize, usize),
) -> Tensor<B, 2> {
    let s = q.dims()[2];
    let t = k.dims()[2];
    let n_rep = h / kv;
    // Query heads sharing a key/value head stacked along the sequence axis.
    let q = q.reshape([1, kv, n_rep * s, d]);
    let scores = q
        .matmul(k.swap_dims(2, 3))
        .mul_scalar(1.0 / (d as f64).sqrt());
    let scores = if s > 1 {
        let mask = Tensor::<B, 2, Bool>::tril_mask([s, t], past as i64, &scores.device())
            .reshape([1, 1, s, t])
            .expand([1, h, s, t]);
        scores
            .reshape([1, h, s, t])
            .mask_fill(mask, f32::MIN)
            .reshape([1, kv, n_rep * s, t])
    } else {
        scores
    };
    softmax(scores, 3)
        .matmul(v)
        .reshape([1, h, s, d])
        .swap_dims(1, 2)
        .reshape([s, h * d])
}
