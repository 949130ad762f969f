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
//! Rotary tables are computed once per step for all rows (positions differ
//! per sequence). Attention runs per sequence against that sequence's own
//! [`KvCache`], whose buffers are allocated once for prompt + token budget.
//! A sequence may bring many new tokens (a chunk of its prompt) next to
//! other sequences' single decode tokens: chunked prefill shares the step.
//!
//! It computes what [`llama_model::Llama::forward_with`] computes for base +
//! Δ̂ merged, up to float rounding: `x·W + x·Δ̂` instead of `x·(W + Δ̂)`.

use burn::tensor::module::embedding;
use burn::tensor::{backend::Backend, Bool, Int, Tensor, TensorData};
use llama_model::rope::RotaryEmbedding;
use llama_model::{attend, KvCache, LinearWeight, RopeScaling};

use super::payload::DeltaOp;
use super::tenant::{Base, Tenant, TenantEmbed, TenantHead, TenantLinear};

/// One sequence's part of a step: its tenant (`None` = the base), its new
/// tokens, its cache and whether its last new token's logits are wanted.
pub struct StepInput<'a, B: Backend> {
    /// The tenant, or `None` for the base model itself.
    pub tenant: Option<&'a Tenant<B>>,
    /// New tokens (at least one).
    pub tokens: &'a [u32],
    /// The sequence's cache, extended by this step.
    pub kv: &'a mut KvCache<B>,
    /// Whether to compute the logits after the last new token (false for a
    /// prompt chunk that is not the prompt's last: the head is skipped).
    pub logits: bool,
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

/// Runs one step and returns, per input in input order, the logits after
/// its last new token (`vocab` values) or `None` where they were not asked.
///
/// # Panics
/// If an input has no tokens (the scheduler never builds one).
pub fn step<B: Backend>(base: &Base<B>, inputs: &mut [StepInput<'_, B>]) -> Vec<Option<Vec<f32>>> {
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
    let pasts: Vec<usize> = inputs.iter().map(|i| i.kv.len()).collect();
    let row_groups = groups(inputs.iter().map(|i| i.tenant).zip(lens.iter().copied()));

    // Embedding.
    let ids: Vec<i64> = inputs
        .iter()
        .flat_map(|i| i.tokens.iter().map(|&t| i64::from(t)))
        .collect();
    let tokens = Tensor::<B, 2, Int>::from_data(TensorData::new(ids, [1, n]), &device);
    let mut x = embed(base, &row_groups, inputs, tokens, n);
    let (nh, nkv, d) = (
        config.num_attention_heads,
        config.num_key_value_heads,
        config.head_dim,
    );
    let rope = Rope::new(base, &pasts, &lens, &device);
    // Causal masks of the inputs with more than one new token (decode rows need none).
    let masks: Vec<Option<Tensor<B, 4, Bool>>> = lens
        .iter()
        .zip(&pasts)
        .map(|(&s, &past)| {
            (s > 1).then(|| {
                Tensor::<B, 2, Bool>::tril_mask([s, past + s], past as i64, &device).reshape([
                    1,
                    1,
                    s,
                    past + s,
                ])
            })
        })
        .collect();
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
        // [n, heads·d] → [1, heads, n, d], every row rotated at its own position.
        let heads = |t: Tensor<B, 2>, h: usize| t.reshape([1, n, h, d]).swap_dims(1, 2);
        let q = rope.apply(heads(q, nh), &offsets, &lens);
        let k = rope.apply(heads(k, nkv), &offsets, &lens);
        let v = heads(v, nkv);
        let mut outs = Vec::with_capacity(inputs.len());
        for (j, input) in inputs.iter_mut().enumerate() {
            let (off, s) = (offsets[j], lens[j]);
            let qj = q.clone().narrow(2, off, s);
            let kj = k.clone().narrow(2, off, s);
            let vj = v.clone().narrow(2, off, s);
            let (k_all, v_all) = input.kv.layer_mut(li).append(kj, vj);
            outs.push(attend(qj, k_all, v_all, masks[j].as_ref()).reshape([s, nh * d]));
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
        input.kv.finish_step(s, None);
    }

    // Last new token of every input that wants logits → final norm → head.
    let wanted: Vec<usize> = (0..inputs.len()).filter(|&j| inputs[j].logits).collect();
    let mut result: Vec<Option<Vec<f32>>> = (0..inputs.len()).map(|_| None).collect();
    if wanted.is_empty() {
        return result;
    }
    let last: Vec<i64> = wanted
        .iter()
        .map(|&j| (offsets[j] + lens[j] - 1) as i64)
        .collect();
    let last_groups = groups(wanted.iter().map(|&j| (inputs[j].tenant, 1)));
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
    let logits = project_with(&base.head, xl.clone(), &last_groups, |t| match &t.head {
        Some(TenantHead::Full(w)) => Some(Change::Replace(w)),
        Some(TenantHead::Rows(_)) => None,
        None => change(t, "lm_head.weight"),
    });
    let vocab = config.vocab_size;
    let mut host: Vec<f32> = logits
        .into_data()
        .convert::<f32>()
        .to_vec()
        .unwrap_or_default();
    // A head that differs from the base's on some vocabulary rows: those
    // logits are the tenant's rows times x, the others the base's.
    for g in &last_groups {
        let Some(TenantHead::Rows(rows)) = g.tenant.and_then(|t| t.head.as_ref()) else {
            continue;
        };
        if rows.rows.is_empty() {
            continue;
        }
        let part: Vec<f32> = rows
            .head
            .forward(xl.clone().narrow(0, g.start, g.len))
            .into_data()
            .convert::<f32>()
            .to_vec()
            .unwrap_or_default();
        let k = rows.rows.len();
        for (r, p) in part.chunks_exact(k).enumerate() {
            let out = &mut host[(g.start + r) * vocab..(g.start + r + 1) * vocab];
            for (&v, &l) in rows.rows.iter().zip(p) {
                out[v as usize] = l;
            }
        }
    }
    for (&j, l) in wanted.iter().zip(host.chunks_exact(vocab)) {
        result[j] = Some(l.to_vec());
    }
    result
}

/// The rotary tables of one step: one `[1, 1, n, d]` pair for all rows, each
/// row at its own position — or, with dynamic NTK scaling (whose frequencies
/// depend on the longest position of the call), one pair per sequence, as
/// `generate` computes them for that sequence alone.
enum Rope<B: Backend> {
    Rows(Tensor<B, 4>, Tensor<B, 4>),
    PerSequence(Vec<(Tensor<B, 4>, Tensor<B, 4>)>),
}

impl<B: Backend> Rope<B> {
    fn new(base: &Base<B>, pasts: &[usize], lens: &[usize], device: &B::Device) -> Self {
        let range = |past: usize, s: usize| past as i64..(past + s) as i64;
        if matches!(
            base.config().rope_scaling,
            Some(RopeScaling::DynamicNtk { .. })
        ) {
            return Self::PerSequence(
                pasts
                    .iter()
                    .zip(lens)
                    .map(|(&p, &s)| {
                        let pos = Tensor::<B, 1, Int>::arange(range(p, s), device).reshape([1, s]);
                        base.rope.cos_sin(pos)
                    })
                    .collect(),
            );
        }
        let positions: Vec<i64> = pasts
            .iter()
            .zip(lens)
            .flat_map(|(&p, &s)| range(p, s))
            .collect();
        let n = positions.len();
        let pos = Tensor::<B, 2, Int>::from_data(TensorData::new(positions, [1, n]), device);
        let (cos, sin) = base.rope.cos_sin(pos);
        Self::Rows(cos, sin)
    }

    /// Rotates `x` `[1, heads, n, d]`.
    fn apply(&self, x: Tensor<B, 4>, offsets: &[usize], lens: &[usize]) -> Tensor<B, 4> {
        match self {
            Self::Rows(cos, sin) => RotaryEmbedding::apply(x, cos, sin),
            Self::PerSequence(tables) => {
                let parts = tables
                    .iter()
                    .zip(offsets.iter().zip(lens))
                    .map(|((cos, sin), (&o, &s))| {
                        RotaryEmbedding::apply(x.clone().narrow(2, o, s), cos, sin)
                    })
                    .collect();
                Tensor::cat(parts, 2)
            }
        }
    }
}

/// The embedding rows `[n, hidden]` of every input token: the base's, a
/// tenant's whole carried embedding for its rows, or the base's rows with
/// the tenant's changed rows put in.
fn embed<B: Backend>(
    base: &Base<B>,
    row_groups: &[Group<'_, B>],
    inputs: &[StepInput<'_, B>],
    tokens: Tensor<B, 2, Int>,
    n: usize,
) -> Tensor<B, 2> {
    let h = base.config().hidden_size;
    let full = |t: &Tenant<B>| match &t.embed {
        Some(TenantEmbed::Full(e)) => Some(e.clone()),
        _ => None,
    };
    let mut x = if row_groups.iter().all(|g| g.tenant.and_then(full).is_none()) {
        embedding(base.model.embed_tokens.val(), tokens).reshape([n, h])
    } else {
        let parts = row_groups
            .iter()
            .map(|g| {
                let w = g
                    .tenant
                    .and_then(full)
                    .unwrap_or_else(|| base.model.embed_tokens.val());
                embedding(w, tokens.clone().narrow(1, g.start, g.len)).reshape([g.len, h])
            })
            .collect();
        Tensor::cat(parts, 0)
    };
    let mut row = 0;
    for input in inputs {
        let rows = match input.tenant.and_then(|t| t.embed.as_ref()) {
            Some(TenantEmbed::Rows(rows)) => Some(rows),
            _ => None,
        };
        for &tok in input.tokens {
            if let Some(&i) = rows.and_then(|r| r.index.get(&tok)) {
                let v = rows.expect("looked up").values.clone().narrow(0, i, 1);
                x = x.slice_assign([row..row + 1, 0..h], v);
            }
            row += 1;
        }
    }
    x
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
