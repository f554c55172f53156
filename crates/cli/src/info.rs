//! `minicpm info`: what a config describes, in the paper's terms.

use minicpm_model::mup::{rule, Parametrization, TensorRole};
use minicpm_model::{hf, ModelConfig, ParamCounts};
use minicpm_train::optimizer::OptimConfig;
use minicpm_train::RunConfig;
use std::path::Path;
use std::process::ExitCode;

fn group(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

pub fn run(path: &Path) -> anyhow::Result<ExitCode> {
    let (model, p, optim) = if path.is_dir() {
        (
            ModelConfig::from_hf_json(&path.join(hf::CONFIG_FILE))?,
            Parametrization::Mup,
            OptimConfig::default(),
        )
    } else if path.extension().is_some_and(|e| e == "gguf") {
        let source = minicpm_serve::gguf_model::GgufSource::open(path)?;
        (
            source.config().clone(),
            Parametrization::Mup,
            OptimConfig::default(),
        )
    } else if path.extension().is_some_and(|e| e == "json") {
        (
            ModelConfig::from_hf_json(path)?,
            Parametrization::Mup,
            OptimConfig::default(),
        )
    } else {
        let run = RunConfig::load(path, &[])?;
        (run.model, run.parametrization, run.optim)
    };
    print!("{}", describe(&model, p, &optim));
    Ok(ExitCode::SUCCESS)
}

pub fn describe(c: &ModelConfig, p: Parametrization, optim: &OptimConfig) -> String {
    let r = minicpm_model::mup::resolve(c, p);
    let non_emb = c.non_embedding_params();
    let emb = c.embedding_params();
    let mut s = String::new();
    s += &format!(
        "shape: vocab {}, hidden {}, layers {}, heads {} / kv heads {} (head_dim {}), d_ff {}, {} embeddings\n",
        c.vocab_size,
        c.hidden_size,
        c.num_hidden_layers,
        c.num_attention_heads,
        c.num_kv_heads(),
        c.head_dim(),
        c.intermediate_size,
        if c.tie_word_embeddings { "tied" } else { "untied" }
    );
    let scaling = match &c.rope_scaling {
        // The config.json form, which names only the keys that are set.
        Some(r) => serde_json::to_string(r).unwrap_or_default(),
        None => "none".into(),
    };
    s += &format!(
        "rope: theta {}, scaling {scaling}, max positions {}\n",
        c.rope_theta, c.max_position_embeddings
    );
    s += &format!("non-embedding parameters: {}\n", group(non_emb));
    s += &format!("embedding parameters: {}\n", group(emb));
    s += &format!("total parameters: {}\n", group(non_emb + emb));
    if let Some((experts, top_k)) = c.moe() {
        let active = ParamCounts::of(c).active_non_embedding();
        let (balance, z) = c.router_loss_coefs();
        s += &format!(
            "mixture of experts: {experts} experts, top-{top_k}; load-balancing loss x{balance}, router z-loss x{z}\n"
        );
        s += &format!(
            "active parameters per token: {} non-embedding, {} with the embeddings\n",
            group(active),
            group(active + emb)
        );
    }
    s += &format!(
        "parametrization: {p}: embedding x{}, residual branches x{:.6} (scale_depth {} / sqrt({})), logits: hidden / {} (hidden {} / dim_model_base {})\n",
        r.scale_emb,
        r.residual_scale(),
        r.scale_depth,
        r.num_hidden_layers,
        r.scale_width(),
        r.hidden_size,
        r.dim_model_base
    );
    let mut roles = vec![TensorRole::Matrix, TensorRole::Embedding];
    if !c.tie_word_embeddings {
        roles.push(TensorRole::LmHead);
    }
    roles.push(TensorRole::Norm);
    if c.moe().is_some() {
        roles.push(TensorRole::Router);
    }
    s += &format!("per-group (base lr {}):\n", optim.lr);
    for role in roles {
        let t = rule(&r, p, role);
        let init = t
            .init_std
            .map_or("ones".to_string(), |x| format!("N(0, {x:.6}^2)"));
        s += &format!(
            "  {:<10} init {:<20} lr {:.6e} (x{:.6})  weight decay {}\n",
            role.label(),
            init,
            optim.lr * t.lr_scale,
            t.lr_scale,
            if t.weight_decay {
                optim.weight_decay
            } else {
                0.0
            }
        );
    }
    s
}
