//! Token samplers with llama.cpp's semantics and default chain: penalties → top-k → top-p →
//! min-p → temperature → a seeded draw; temperature 0 is greedy.

/// Sampling settings; the defaults are llama.cpp's.
#[derive(Clone, Debug)]
pub struct SamplerConfig {
    /// Temperature; 0 or below picks the most likely token.
    pub temp: f32,
    /// Keep the k most likely (0: off).
    pub top_k: usize,
    /// Keep the smallest set with this much probability (1: off).
    pub top_p: f32,
    /// Drop tokens below this fraction of the top probability (0: off).
    pub min_p: f32,
    /// Repetition penalty over the last `penalty_last_n` tokens (1: off).
    pub penalty_repeat: f32,
    /// Frequency penalty (0: off).
    pub penalty_freq: f32,
    /// Presence penalty (0: off).
    pub penalty_present: f32,
    /// How many recent tokens the penalties look at.
    pub penalty_last_n: usize,
    /// Seed of the draw: the same seed gives the same tokens.
    pub seed: u64,
}

impl Default for SamplerConfig {
    fn default() -> Self {
        SamplerConfig {
            temp: 0.8,
            top_k: 40,
            top_p: 0.95,
            min_p: 0.05,
            penalty_repeat: 1.0,
            penalty_freq: 0.0,
            penalty_present: 0.0,
            penalty_last_n: 64,
            seed: 0x5EED,
        }
    }
}

impl SamplerConfig {
    /// Greedy decoding (what llama.cpp's `--temp 0` and `llama-simple` do).
    pub fn greedy() -> Self {
        SamplerConfig {
            temp: 0.0,
            ..SamplerConfig::default()
        }
    }
}

/// A sampler with its state: recent tokens and the random stream.
#[derive(Debug)]
pub struct Sampler {
    cfg: SamplerConfig,
    recent: std::collections::VecDeque<u32>,
    rng: u64,
}

/// The index of the largest logit; the first wins ties (llama.cpp's greedy sampler).
pub fn argmax(logits: &[f32]) -> usize {
    let mut best = 0;
    for (i, &l) in logits.iter().enumerate() {
        if l > logits[best] {
            best = i;
        }
    }
    best
}

impl Sampler {
    /// A sampler for `cfg`.
    pub fn new(cfg: SamplerConfig) -> Sampler {
        let rng = cfg.seed ^ 0x9E37_79B9_7F4A_7C15;
        Sampler {
            cfg,
            recent: std::collections::VecDeque::new(),
            rng: if rng == 0 { 1 } else { rng },
        }
    }

    /// Records a token that is now part of the sequence (for the penalties).
    pub fn accept(&mut self, token: u32) {
        if self.cfg.penalty_last_n == 0 {
            return;
        }
        if self.recent.len() == self.cfg.penalty_last_n {
            self.recent.pop_front();
        }
        self.recent.push_back(token);
    }

    /// xorshift64*: a small, fixed, documented random stream.
    fn next_f64(&mut self) -> f64 {
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        let r = self.rng.wrapping_mul(0x2545_F491_4F6C_DD1D);
        (r >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Picks the next token from `logits`.
    pub fn sample(&mut self, logits: &[f32]) -> u32 {
        let c = &self.cfg;
        let mut cand: Vec<(u32, f32)> = logits
            .iter()
            .enumerate()
            .map(|(i, &l)| (i as u32, l))
            .collect();
        // Penalties.
        if !self.recent.is_empty()
            && (c.penalty_repeat != 1.0 || c.penalty_freq != 0.0 || c.penalty_present != 0.0)
        {
            let mut counts = std::collections::HashMap::new();
            for &t in &self.recent {
                *counts.entry(t).or_insert(0u32) += 1;
            }
            for (id, l) in cand.iter_mut() {
                if let Some(&n) = counts.get(id) {
                    *l = if *l <= 0.0 {
                        *l * c.penalty_repeat
                    } else {
                        *l / c.penalty_repeat
                    };
                    *l -= n as f32 * c.penalty_freq + c.penalty_present;
                }
            }
        }
        if c.temp <= 0.0 {
            let l: Vec<f32> = cand.iter().map(|x| x.1).collect();
            return cand[argmax(&l)].0;
        }
        // Sorted by logit, ties by id, so the result does not depend on the sort.
        cand.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        if c.top_k > 0 {
            cand.truncate(c.top_k.min(cand.len()));
        }
        let probs = |cand: &[(u32, f32)]| -> Vec<f32> {
            let max = cand[0].1;
            let e: Vec<f32> = cand.iter().map(|x| (x.1 - max).exp()).collect();
            let s: f32 = e.iter().sum();
            e.iter().map(|v| v / s).collect()
        };
        if c.top_p < 1.0 {
            let p = probs(&cand);
            let mut cum = 0.0;
            let mut keep = cand.len();
            for (i, pi) in p.iter().enumerate() {
                cum += pi;
                if cum >= c.top_p {
                    keep = i + 1;
                    break;
                }
            }
            cand.truncate(keep);
        }
        if c.min_p > 0.0 {
            let floor = cand[0].1 + c.min_p.ln();
            let keep = cand.iter().take_while(|x| x.1 >= floor).count().max(1);
            cand.truncate(keep);
        }
        for x in cand.iter_mut() {
            x.1 /= c.temp;
        }
        let p = probs(&cand);
        let r = self.next_f64();
        let mut cum = 0f64;
        for (i, pi) in p.iter().enumerate() {
            cum += f64::from(*pi);
            if r < cum {
                return cand[i].0;
            }
        }
        cand[cand.len() - 1].0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greedy_takes_the_first_maximum() {
        let mut s = Sampler::new(SamplerConfig::greedy());
        assert_eq!(s.sample(&[0.1, 2.0, 2.0, -1.0]), 1);
    }

    #[test]
    fn the_same_seed_gives_the_same_tokens() {
        let logits: Vec<f32> = (0..100).map(|i| ((i * 37) % 17) as f32 * 0.3).collect();
        let run = |seed| {
            let mut s = Sampler::new(SamplerConfig {
                seed,
                ..SamplerConfig::default()
            });
            (0..20).map(|_| s.sample(&logits)).collect::<Vec<_>>()
        };
        assert_eq!(run(7), run(7));
        assert_ne!(run(7), run(8));
    }

    #[test]
    fn top_k_one_is_greedy_and_penalties_bite() {
        let mut s = Sampler::new(SamplerConfig {
            top_k: 1,
            ..SamplerConfig::default()
        });
        assert_eq!(s.sample(&[0.0, 1.0, 3.0]), 2);
        let mut p = Sampler::new(SamplerConfig {
            temp: 0.0,
            penalty_repeat: 10.0,
            ..SamplerConfig::default()
        });
        p.accept(2);
        assert_eq!(p.sample(&[0.0, 1.0, 3.0]), 1);
    }
}
