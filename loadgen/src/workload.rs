//! What to request. Either fixed paths round-robin, or a Go-client-like
//! workload: a module list (from a `module@version` file or discovered in a
//! GOPROXY file tree) with Zipf-distributed popularity, where each simulated
//! client walks `list` → `.info` → `.mod` → `.zip` as `go mod download` does,
//! and a chosen share of requests asks for versions that do not exist.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::util::Rng;

/// One module and its known versions, both already `!`-case-escaped as they
/// appear in proxy URLs; versions ascend in semver order (last = latest).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Module {
    pub path: String,
    pub versions: Vec<String>,
}

/// GOPROXY case-escaping: each upper-case letter becomes `!` + lower case,
/// so paths survive case-insensitive file systems.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 4);
    for c in s.chars() {
        if c.is_ascii_uppercase() {
            out.push('!');
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// Inverse of [`escape`]; None for malformed input (`!` not followed by a
/// lower-case letter, or a raw upper-case letter).
pub fn unescape(s: &str) -> Option<String> {
    let mut out = String::with_capacity(s.len());
    let mut bang = false;
    for c in s.chars() {
        if bang {
            if !c.is_ascii_lowercase() {
                return None;
            }
            out.push(c.to_ascii_uppercase());
            bang = false;
        } else if c == '!' {
            bang = true;
        } else if c.is_ascii_uppercase() {
            return None;
        } else {
            out.push(c);
        }
    }
    (!bang).then_some(out)
}

/// Semantic-version order for `vMAJOR.MINOR.PATCH[-pre][+build]`, the rule
/// the go command uses to find the latest version; anything unparsable
/// sorts before every valid version, by plain string order.
pub fn semver_cmp(a: &str, b: &str) -> Ordering {
    fn parse(v: &str) -> Option<([u64; 3], Option<&str>)> {
        let v = v.strip_prefix('v')?;
        let v = v.split('+').next()?;
        let (core, pre) = match v.split_once('-') {
            Some((c, p)) => (c, Some(p)),
            None => (v, None),
        };
        let mut nums = [0u64; 3];
        let mut parts = core.split('.');
        for n in &mut nums {
            *n = parts.next()?.parse().ok()?;
        }
        parts.next().is_none().then_some((nums, pre))
    }
    fn cmp_pre(a: &str, b: &str) -> Ordering {
        for (x, y) in a.split('.').zip(b.split('.')) {
            let o = match (x.parse::<u64>(), y.parse::<u64>()) {
                (Ok(i), Ok(j)) => i.cmp(&j),
                (Ok(_), Err(_)) => Ordering::Less,
                (Err(_), Ok(_)) => Ordering::Greater,
                (Err(_), Err(_)) => x.cmp(y),
            };
            if o != Ordering::Equal {
                return o;
            }
        }
        a.split('.').count().cmp(&b.split('.').count())
    }
    match (parse(a), parse(b)) {
        (Some((na, pa)), Some((nb, pb))) => na.cmp(&nb).then_with(|| match (pa, pb) {
            (None, None) => Ordering::Equal,
            (None, Some(_)) => Ordering::Greater,
            (Some(_), None) => Ordering::Less,
            (Some(x), Some(y)) => cmp_pre(x, y),
        }),
        (Some(_), None) => Ordering::Greater,
        (None, Some(_)) => Ordering::Less,
        (None, None) => a.cmp(b),
    }
}

fn finish(map: BTreeMap<String, Vec<String>>) -> Vec<Module> {
    map.into_iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(path, mut versions)| {
            versions.sort_by(|a, b| semver_cmp(&unescape(a).unwrap_or_default(), &unescape(b).unwrap_or_default()));
            versions.dedup();
            Module { path, versions }
        })
        .collect()
}

/// Parses a module list: one `module@version` per line, `#` comments and
/// blank lines ignored. Modules keep the order of their first line, which
/// is their popularity rank (first line = most requested).
pub fn parse_module_list(text: &str) -> Result<Vec<Module>, String> {
    let mut order: Vec<String> = Vec::new();
    let mut map: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let (module, version) = line
            .rsplit_once('@')
            .filter(|(m, v)| !m.is_empty() && v.starts_with('v'))
            .ok_or_else(|| format!("line {}: expected module@version, got {line:?}", i + 1))?;
        let module = escape(module);
        if !map.contains_key(&module) {
            order.push(module.clone());
        }
        map.entry(module).or_default().push(escape(version));
    }
    if map.is_empty() {
        return Err("the module list has no module@version lines".into());
    }
    let mut by_path: BTreeMap<String, Module> = finish(map).into_iter().map(|m| (m.path.clone(), m)).collect();
    Ok(order.iter().filter_map(|p| by_path.remove(p)).collect())
}

/// Finds every `<escaped module>/@v/<version>.{info,mod,zip}` under `root`
/// (a GOPROXY file layout, or a module cache's `cache/download`). Sorted by
/// module path; the caller decides the popularity order.
pub fn discover_tree(root: &Path) -> Result<Vec<Module>, String> {
    let mut map: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut stack = vec![(root.to_path_buf(), Vec::<String>::new())];
    while let Some((dir, rel)) = stack.pop() {
        let entries = std::fs::read_dir(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        for entry in entries {
            let entry = entry.map_err(|e| format!("{}: {e}", dir.display()))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let path = entry.path();
            if !path.is_dir() {
                continue;
            }
            if name == "@v" {
                if rel.is_empty() {
                    continue;
                }
                let module = rel.join("/");
                if unescape(&module).is_none() {
                    continue;
                }
                let versions = map.entry(module).or_default();
                for f in std::fs::read_dir(&path).map_err(|e| format!("{}: {e}", path.display()))? {
                    let f = f.map_err(|e| format!("{}: {e}", path.display()))?.file_name().to_string_lossy().into_owned();
                    if let Some(v) = f.strip_suffix(".info").or_else(|| f.strip_suffix(".mod")).or_else(|| f.strip_suffix(".zip")) {
                        if v.starts_with('v') && unescape(v).is_some() {
                            versions.push(v.to_string());
                        }
                    }
                }
            } else if !name.starts_with('.') && rel.len() < 64 {
                let mut r = rel.clone();
                r.push(name);
                stack.push((path, r));
            }
        }
    }
    let modules = finish(map);
    if modules.is_empty() {
        return Err(format!("{}: no <module>/@v/<version>.info|.mod|.zip files found", root.display()));
    }
    Ok(modules)
}

/// Samples ranks 0..n with P(rank k) ∝ 1/(k+1)^s by inverting a precomputed
/// CDF (exact for any exponent, O(log n) per sample; s = 0 is uniform).
#[derive(Clone, Debug)]
pub struct Zipf {
    cdf: Vec<f64>,
}

impl Zipf {
    pub fn new(n: usize, s: f64) -> Zipf {
        let mut cdf = Vec::with_capacity(n);
        let mut acc = 0.0;
        for k in 1..=n {
            acc += (k as f64).powf(-s);
            cdf.push(acc);
        }
        for c in &mut cdf {
            *c /= acc;
        }
        Zipf { cdf }
    }

    pub fn sample(&self, rng: &mut Rng) -> usize {
        let u = rng.next_f64();
        self.cdf.partition_point(|&c| c <= u).min(self.cdf.len() - 1)
    }
}

/// How often each step appears in a client's walk (probabilities in 0..=1).
/// `list` is there when the client resolves `@latest` (and then fetches the
/// latest version); the others when the version is not yet in its cache.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Mix {
    pub list: f64,
    pub info: f64,
    pub module: f64,
    pub zip: f64,
}

impl Default for Mix {
    fn default() -> Self {
        Mix { list: 0.25, info: 1.0, module: 1.0, zip: 1.0 }
    }
}

pub const DEFAULT_MIX: &str = "list=0.25,info=1,mod=1,zip=1";

impl Mix {
    /// Parses `list=0.25,info=1,mod=1,zip=0.8` (steps left out are 0).
    pub fn parse(s: &str) -> Result<Mix, String> {
        let mut mix = Mix { list: 0.0, info: 0.0, module: 0.0, zip: 0.0 };
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (k, v) = part.split_once('=').ok_or_else(|| format!("{part:?}: expected step=probability"))?;
            let v: f64 = v.trim().parse().map_err(|_| format!("{part:?}: bad probability"))?;
            if !(0.0..=1.0).contains(&v) {
                return Err(format!("{part:?}: probability must be within 0..1"));
            }
            match k.trim() {
                "list" => mix.list = v,
                "info" => mix.info = v,
                "mod" => mix.module = v,
                "zip" => mix.zip = v,
                other => return Err(format!("unknown step {other:?} (list, info, mod, zip)")),
            }
        }
        if mix.list + mix.info + mix.module + mix.zip == 0.0 {
            return Err("the mix includes no step".into());
        }
        Ok(mix)
    }

    fn probs(&self) -> [f64; 4] {
        [self.list, self.info, self.module, self.zip]
    }

    /// Expected requests in a (non-empty) walk.
    fn mean_walk(&self) -> f64 {
        let p = self.probs();
        let none: f64 = p.iter().map(|x| 1.0 - x).product();
        p.iter().sum::<f64>() / (1.0 - none)
    }
}

/// The workload as sent to worker processes.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct WorkloadSpec {
    /// In popularity order (index 0 = Zipf rank 1).
    pub modules: Vec<Module>,
    pub zipf: f64,
    pub mix: Mix,
    /// Share of requests that ask for a version that does not exist.
    pub miss_ratio: f64,
}

/// Seeded Fisher–Yates shuffle: a discovered tree is in path order, and
/// popularity should not follow the alphabet.
pub fn shuffle<T>(v: &mut [T], seed: u64) {
    let mut rng = Rng::new(seed);
    for i in (1..v.len()).rev() {
        let j = rng.below(i as u64 + 1) as usize;
        v.swap(i, j);
    }
}

/// Where request paths come from, as sent to worker processes.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum SourceSpec {
    /// No requests (a hold run without trickle).
    None,
    /// Paths under the target's base path, sent round-robin.
    Paths(Vec<String>),
    Workload(WorkloadSpec),
}

/// A prepared source: the Zipf table is built once per process and shared.
pub enum Source {
    None,
    Paths(Vec<String>),
    Workload { spec: WorkloadSpec, zipf: Zipf, walk_miss: f64 },
}

const STEP_LIST: u8 = 1;
const STEP_INFO: u8 = 2;
const STEP_MOD: u8 = 4;
const STEP_ZIP: u8 = 8;

/// Per-connection position in its current walk (12 bytes: a hold run keeps
/// one per connection).
#[derive(Clone, Copy, Debug, Default)]
pub struct Walk {
    module: u32,
    /// Index into the module's versions, or the random number of a miss.
    version: u32,
    /// Steps still to request (bit set), lowest first.
    steps: u8,
    miss: bool,
}

impl Source {
    pub fn prepare(spec: &SourceSpec) -> Source {
        match spec {
            SourceSpec::None => Source::None,
            SourceSpec::Paths(p) => Source::Paths(p.clone()),
            SourceSpec::Workload(w) => {
                let zipf = Zipf::new(w.modules.len(), w.zipf);
                // The ratio is per request, but a miss walk is one request and
                // a hit walk several: pick the per-walk probability p with
                // p / (p + (1-p)·L) = r, L the mean hit-walk length.
                let r = w.miss_ratio.clamp(0.0, 1.0);
                let l = w.mix.mean_walk();
                let walk_miss = if r >= 1.0 { 1.0 } else { r * l / (1.0 - r + r * l) };
                Source::Workload { spec: w.clone(), zipf, walk_miss }
            }
        }
    }

    pub fn is_none(&self) -> bool {
        matches!(self, Source::None)
    }

    /// Writes the next request path for a connection into `out` and returns
    /// whether a 404/410 is the expected answer (a deliberate miss).
    pub fn next(&self, base: &str, walk: &mut Walk, counter: &mut u64, rng: &mut Rng, out: &mut String) -> bool {
        out.clear();
        match self {
            Source::None => {
                out.push_str(base);
                out.push('/');
                false
            }
            Source::Paths(paths) => {
                out.push_str(base);
                out.push_str(&paths[(*counter % paths.len() as u64) as usize]);
                *counter += 1;
                false
            }
            Source::Workload { spec, zipf, walk_miss } => {
                if walk.steps == 0 {
                    start_walk(spec, zipf, *walk_miss, walk, rng);
                }
                let step = walk.steps & walk.steps.wrapping_neg();
                walk.steps &= !step;
                let m = &spec.modules[walk.module as usize];
                out.push_str(base);
                out.push('/');
                out.push_str(&m.path);
                out.push_str("/@v/");
                if step == STEP_LIST {
                    out.push_str("list");
                    return false;
                }
                if walk.miss {
                    // Canonical-looking but absent: real clients ask for
                    // typos and not-yet-published tags.
                    use std::fmt::Write as _;
                    let _ = write!(out, "v0.0.{}", 900_000_000 + walk.version % 99_999_999);
                } else {
                    out.push_str(&m.versions[walk.version as usize]);
                }
                out.push_str(match step {
                    STEP_INFO => ".info",
                    STEP_MOD => ".mod",
                    _ => ".zip",
                });
                walk.miss
            }
        }
    }
}

fn start_walk(spec: &WorkloadSpec, zipf: &Zipf, walk_miss: f64, walk: &mut Walk, rng: &mut Rng) {
    walk.module = zipf.sample(rng) as u32;
    let versions = spec.modules[walk.module as usize].versions.len() as u64;
    if rng.next_f64() < walk_miss {
        // A client asking for a missing version gets 404 on .info and stops.
        walk.miss = true;
        walk.version = rng.next_u64() as u32;
        walk.steps = STEP_INFO;
        return;
    }
    walk.miss = false;
    let p = spec.mix.probs();
    let bits = [STEP_LIST, STEP_INFO, STEP_MOD, STEP_ZIP];
    walk.steps = 0;
    while walk.steps == 0 {
        for (prob, bit) in p.iter().zip(bits) {
            if rng.next_f64() < *prob {
                walk.steps |= bit;
            }
        }
    }
    // `@latest` resolution fetches the newest version; a pinned dependency
    // any of them.
    walk.version = if walk.steps & STEP_LIST != 0 { versions - 1 } else { rng.below(versions) } as u32;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_round_trips() {
        assert_eq!(escape("example.com/BurntSushi/Toml"), "example.com/!burnt!sushi/!toml");
        assert_eq!(unescape("example.com/!burnt!sushi/!toml").unwrap(), "example.com/BurntSushi/Toml");
        assert_eq!(unescape("example.com/Upper"), None);
        assert_eq!(unescape("trailing!"), None);
        assert_eq!(unescape("a!1"), None);
    }

    #[test]
    fn semver_order() {
        let mut v = vec!["v1.10.0", "v1.2.0", "v1.2.0-rc.1", "v1.2.0-beta", "v0.9.9", "v2.0.0+incompatible", "v1.2.0-rc.10"];
        v.sort_by(|a, b| semver_cmp(a, b));
        assert_eq!(v, ["v0.9.9", "v1.2.0-beta", "v1.2.0-rc.1", "v1.2.0-rc.10", "v1.2.0", "v1.10.0", "v2.0.0+incompatible"]);
    }

    #[test]
    fn module_list_parsing() {
        let text = "# popular first\nexample.com/b@v1.0.0\nexample.com/A@v1.10.0\n\nexample.com/b@v1.2.0 # newer\nexample.com/A@v1.9.0\n";
        let mods = parse_module_list(text).unwrap();
        assert_eq!(mods.len(), 2);
        assert_eq!(mods[0], Module { path: "example.com/b".into(), versions: vec!["v1.0.0".into(), "v1.2.0".into()] });
        assert_eq!(mods[1].path, "example.com/!a");
        assert_eq!(mods[1].versions, ["v1.9.0", "v1.10.0"]);
        assert!(parse_module_list("example.com/nover\n").is_err());
        assert!(parse_module_list("# nothing\n").is_err());
    }

    #[test]
    fn discovers_modules_in_a_goproxy_tree() {
        let root = std::env::temp_dir().join(format!("loadgen-discover-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let files = [
            "example.com/a/@v/list",
            "example.com/a/@v/v1.0.0.info",
            "example.com/a/@v/v1.0.0.mod",
            "example.com/a/@v/v1.0.0.zip",
            "example.com/a/@v/v1.10.0.info",
            "example.com/a/@v/v1.9.0.mod",
            "example.com/!big!corp/lib/@v/v0.1.0-!r!c1.info",
            "example.com/!big!corp/lib/sub/@v/v2.0.0.zip",
            "example.com/empty/@v/list",
            "example.com/a/@v/notes.txt",
        ];
        for f in files {
            let p = root.join(f);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(&p, b"x").unwrap();
        }
        let mods = discover_tree(&root).unwrap();
        let _ = std::fs::remove_dir_all(&root);
        let got: Vec<(&str, Vec<&str>)> = mods.iter().map(|m| (m.path.as_str(), m.versions.iter().map(String::as_str).collect())).collect();
        assert_eq!(
            got,
            vec![
                ("example.com/!big!corp/lib", vec!["v0.1.0-!r!c1"]),
                ("example.com/!big!corp/lib/sub", vec!["v2.0.0"]),
                ("example.com/a", vec!["v1.0.0", "v1.9.0", "v1.10.0"]),
            ]
        );
    }

    #[test]
    fn zipf_sampler_follows_the_power_law() {
        let n = 100;
        let z = Zipf::new(n, 1.0);
        let mut rng = Rng::new(42);
        let draws = 400_000;
        let mut counts = vec![0u32; n];
        for _ in 0..draws {
            counts[z.sample(&mut rng)] += 1;
        }
        // P(rank 1) = 1/H_100 ≈ 0.1928; rank k is k times rarer than rank 1.
        let h: f64 = (1..=n).map(|k| 1.0 / k as f64).sum();
        let p1 = counts[0] as f64 / draws as f64;
        assert!((p1 - 1.0 / h).abs() < 0.01, "p1 = {p1}");
        for k in [2usize, 5, 10] {
            let ratio = counts[0] as f64 / counts[k - 1] as f64;
            assert!((ratio - k as f64).abs() / (k as f64) < 0.1, "rank {k}: ratio {ratio}");
        }
        // Counts never increase with rank by more than noise.
        assert!(counts[0] > counts[9] && counts[9] > counts[99]);

        // s = 0 is uniform; larger s concentrates on the head.
        let uniform = Zipf::new(10, 0.0);
        let mut c = [0u32; 10];
        for _ in 0..100_000 {
            c[uniform.sample(&mut rng)] += 1;
        }
        assert!(c.iter().all(|&x| (9_000..11_000).contains(&x)), "{c:?}");
        let steep = Zipf::new(1000, 2.0);
        let head = (0..10_000).filter(|_| steep.sample(&mut rng) == 0).count();
        assert!(head > 5_500, "s=2 head share {head}/10000");
    }

    fn modules(n: usize) -> Vec<Module> {
        (0..n).map(|i| Module { path: format!("example.com/m{i}"), versions: vec!["v1.0.0".into(), "v1.1.0".into()] }).collect()
    }

    #[test]
    fn walks_go_list_info_mod_zip_in_order() {
        let spec =
            WorkloadSpec { modules: modules(3), zipf: 1.0, mix: Mix { list: 1.0, info: 1.0, module: 1.0, zip: 1.0 }, miss_ratio: 0.0 };
        let src = Source::prepare(&SourceSpec::Workload(spec));
        let (mut walk, mut ctr, mut rng, mut out) = (Walk::default(), 0, Rng::new(1), String::new());
        let mut seen = Vec::new();
        for _ in 0..4 {
            assert!(!src.next("/base", &mut walk, &mut ctr, &mut rng, &mut out));
            seen.push(out.clone());
        }
        let module = seen[0].trim_end_matches("/@v/list").to_string();
        assert!(module.starts_with("/base/example.com/m"));
        assert_eq!(
            seen,
            [
                format!("{module}/@v/list"),
                format!("{module}/@v/v1.1.0.info"),
                format!("{module}/@v/v1.1.0.mod"),
                format!("{module}/@v/v1.1.0.zip"),
            ]
        );
    }

    #[test]
    fn miss_share_is_per_request() {
        let spec = WorkloadSpec { modules: modules(50), zipf: 1.1, mix: Mix::default(), miss_ratio: 0.2 };
        let src = Source::prepare(&SourceSpec::Workload(spec));
        let (mut walk, mut ctr, mut rng, mut out) = (Walk::default(), 0, Rng::new(9), String::new());
        let n = 100_000;
        let mut misses = 0;
        for _ in 0..n {
            if src.next("", &mut walk, &mut ctr, &mut rng, &mut out) {
                misses += 1;
                assert!(out.contains("/@v/v0.0.9") && out.ends_with(".info"), "{out}");
            }
        }
        let share = misses as f64 / n as f64;
        assert!((share - 0.2).abs() < 0.01, "miss share {share}");
    }

    #[test]
    fn fixed_paths_round_robin() {
        let src = Source::prepare(&SourceSpec::Paths(vec!["/a".into(), "/b".into()]));
        let (mut walk, mut ctr, mut rng, mut out) = (Walk::default(), 0, Rng::new(1), String::new());
        let mut got = Vec::new();
        for _ in 0..3 {
            src.next("", &mut walk, &mut ctr, &mut rng, &mut out);
            got.push(out.clone());
        }
        assert_eq!(got, ["/a", "/b", "/a"]);
    }

    #[test]
    fn mix_parsing() {
        assert_eq!(Mix::parse(DEFAULT_MIX).unwrap(), Mix::default());
        assert_eq!(Mix::parse("zip=1").unwrap(), Mix { list: 0.0, info: 0.0, module: 0.0, zip: 1.0 });
        assert!(Mix::parse("zip=2").is_err());
        assert!(Mix::parse("tar=1").is_err());
        assert!(Mix::parse("zip=0").is_err());
    }
}
