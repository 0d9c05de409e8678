//! Prometheus metrics through the `metrics` facade: one recorder per service instance (never the
//! process-global one: tests run five services, several stacks, in one process, and each
//! `/metrics` shows only its own series).
//!
//! Every series carries the `service` label and the `braid_` prefix. Handles are registered
//! once, when the recording struct is built, and kept there: recording is an atomic operation,
//! with no name formatting or registry lookup per call. A labelled metric is a [`Family`] over
//! closed label sets declared up front, so its series are bounded by construction (never a
//! request path, tenant or subject).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

pub use ::metrics::{Counter, Gauge, Histogram};
use ::metrics::{Key, Label, Metadata, Recorder, SharedString};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle, PrometheusRecorder};

/// How often histogram samples are folded into their buckets when nobody scrapes (bounds the
/// memory held by unscraped samples).
const UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

/// Cheap to clone; all clones share the recorder.
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

struct Inner {
    service: String,
    /// Every counter, gauge and latency histogram.
    recorder: PrometheusRecorder,
    handle: PrometheusHandle,
    /// Histograms whose buckets are not [`latency_buckets`], one recorder per metric name
    /// (buckets are fixed when a recorder is built).
    other_buckets: Mutex<HashMap<String, (Vec<f64>, PrometheusRecorder)>>,
    /// Run before each render (gauges read at scrape time).
    on_scrape: Mutex<Vec<Box<dyn Fn() + Send + Sync>>>,
    /// The database pools registered with [`Metrics::register_pool`] (for the status view).
    pools: Mutex<Vec<PoolSampler>>,
}

type PoolSampler = Arc<dyn Fn() -> PoolSample + Send + Sync>;

fn recorder(service: &str, buckets: &[f64]) -> PrometheusRecorder {
    PrometheusBuilder::new()
        .add_global_label("service", service)
        .set_buckets(buckets)
        .expect("bucket list is not empty")
        .build_recorder()
}

fn key(name: &str, labels: &[(&'static str, &str)]) -> Key {
    let labels: Vec<Label> = labels
        .iter()
        .map(|(k, v)| Label::new(*k, v.to_string()))
        .collect();
    Key::from_parts(format!("braid_{name}"), labels)
}

static METADATA: Metadata<'static> =
    Metadata::new(module_path!(), ::metrics::Level::INFO, Some(module_path!()));

impl Metrics {
    pub fn new(service: &str) -> Self {
        let recorder = recorder(service, &latency_buckets());
        let handle = recorder.handle();
        let inner = Arc::new(Inner {
            service: service.to_string(),
            recorder,
            handle,
            other_buckets: Mutex::new(HashMap::new()),
            on_scrape: Mutex::new(Vec::new()),
            pools: Mutex::new(Vec::new()),
        });
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(upkeep(Arc::downgrade(&inner)));
        }
        Self { inner }
    }

    /// An unlabelled counter.
    pub fn counter(&self, name: &str, help: &'static str) -> Counter {
        self.counter_with(name, help, &[])
    }

    /// A counter with fixed label values.
    pub fn counter_with(
        &self,
        name: &str,
        help: &'static str,
        labels: &[(&'static str, &str)],
    ) -> Counter {
        let key = key(name, labels);
        self.inner.recorder.describe_counter(
            key.name_shared(),
            None,
            SharedString::const_str(help),
        );
        self.inner.recorder.register_counter(&key, &METADATA)
    }

    /// An unlabelled gauge.
    pub fn gauge(&self, name: &str, help: &'static str) -> Gauge {
        self.gauge_with(name, help, &[])
    }

    /// A gauge with fixed label values.
    pub fn gauge_with(
        &self,
        name: &str,
        help: &'static str,
        labels: &[(&'static str, &str)],
    ) -> Gauge {
        let key = key(name, labels);
        self.inner
            .recorder
            .describe_gauge(key.name_shared(), None, SharedString::const_str(help));
        self.inner.recorder.register_gauge(&key, &METADATA)
    }

    /// A histogram with fixed label values and the given bucket upper bounds.
    pub fn histogram_with(
        &self,
        name: &str,
        help: &'static str,
        labels: &[(&'static str, &str)],
        buckets: &[f64],
    ) -> Histogram {
        let key = key(name, labels);
        let describe = |r: &PrometheusRecorder| {
            r.describe_histogram(key.name_shared(), None, SharedString::const_str(help))
        };
        if buckets == latency_buckets().as_slice() {
            describe(&self.inner.recorder);
            return self.inner.recorder.register_histogram(&key, &METADATA);
        }
        let mut others = self
            .inner
            .other_buckets
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let (declared, recorder) = others
            .entry(key.name().to_string())
            .or_insert_with(|| (buckets.to_vec(), recorder(&self.inner.service, buckets)));
        // One metric name has one bucket layout; a second layout is a programming error.
        assert_eq!(
            declared.as_slice(),
            buckets,
            "histogram {} registered with two bucket layouts",
            key.name()
        );
        describe(&*recorder);
        recorder.register_histogram(&key, &METADATA)
    }

    /// One counter per combination of the closed label sets `labels` (name, allowed values).
    pub fn counter_family(
        &self,
        name: &str,
        help: &'static str,
        labels: &[(&'static str, &'static [&'static str])],
    ) -> Family<Counter> {
        Family::new(labels, |values| self.counter_with(name, help, values))
    }

    /// One gauge per combination of the closed label sets `labels`.
    pub fn gauge_family(
        &self,
        name: &str,
        help: &'static str,
        labels: &[(&'static str, &'static [&'static str])],
    ) -> Family<Gauge> {
        Family::new(labels, |values| self.gauge_with(name, help, values))
    }

    /// One histogram per combination of the closed label sets `labels`.
    pub fn histogram_family(
        &self,
        name: &str,
        help: &'static str,
        labels: &[(&'static str, &'static [&'static str])],
        buckets: &[f64],
    ) -> Family<Histogram> {
        Family::new(labels, |values| {
            self.histogram_with(name, help, values, buckets)
        })
    }

    /// Runs `f` before every render of `/metrics` (for gauges read at scrape time; `f` must
    /// be cheap and must not block).
    pub fn on_scrape(&self, f: impl Fn() + Send + Sync + 'static) {
        self.inner
            .on_scrape
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(Box::new(f));
    }

    /// Text exposition format for `/metrics`.
    pub fn render(&self) -> String {
        for hook in self
            .inner
            .on_scrape
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
        {
            hook();
        }
        let mut text = self.inner.handle.render();
        let others = self
            .inner
            .other_buckets
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        for (_, recorder) in others.values() {
            text.push_str(&recorder.handle().render());
        }
        text
    }

    /// The value of the series `name` (with its `braid_` prefix) whose labels include every
    /// `labels` pair, summed over the matching series; `None` when no series matches. For
    /// tests and diagnostics: it renders the whole exposition.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let text = self.render();
        let mut found = None;
        for line in text.lines() {
            let Some(rest) = line.strip_prefix(name) else {
                continue;
            };
            let (label_part, value) = match rest.strip_prefix('{') {
                Some(r) => match r.split_once("} ") {
                    Some((l, v)) => (l, v),
                    None => continue,
                },
                None => match rest.strip_prefix(' ') {
                    Some(v) => ("", v),
                    None => continue,
                },
            };
            let all = labels
                .iter()
                .all(|(k, v)| label_part.split(',').any(|p| p == format!("{k}=\"{v}\"")));
            if all && let Ok(v) = value.trim().parse::<f64>() {
                *found.get_or_insert(0.0) += v;
            }
        }
        found
    }
}

fn run_upkeep(inner: &Inner) {
    inner.handle.run_upkeep();
    let others = inner
        .other_buckets
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    for (_, recorder) in others.values() {
        recorder.handle().run_upkeep();
    }
}

/// Folds histogram samples into buckets every [`UPKEEP_INTERVAL`] until the metrics are dropped.
async fn upkeep(inner: Weak<Inner>) {
    let mut tick = tokio::time::interval(UPKEEP_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        match inner.upgrade() {
            Some(inner) => run_upkeep(&inner),
            None => return,
        }
    }
}

/// Handles of one metric over closed label sets, registered up front. [`Family::get`] picks
/// one by label values: a few comparisons against static strings, no allocation.
pub struct Family<T> {
    values: Vec<&'static [&'static str]>,
    handles: Vec<T>,
}

impl<T> Family<T> {
    fn new(
        labels: &[(&'static str, &'static [&'static str])],
        mut register: impl FnMut(&[(&'static str, &str)]) -> T,
    ) -> Self {
        let values: Vec<&'static [&'static str]> = labels.iter().map(|(_, v)| *v).collect();
        let count: usize = values.iter().map(|v| v.len()).product();
        let mut handles = Vec::with_capacity(count);
        for mut i in 0..count {
            // Row-major: the last label varies fastest (matches `index`).
            let mut combo: Vec<(&'static str, &str)> = Vec::with_capacity(labels.len());
            for (name, allowed) in labels.iter().rev() {
                combo.push((*name, allowed[i % allowed.len()]));
                i /= allowed.len();
            }
            combo.reverse();
            handles.push(register(&combo));
        }
        Self { values, handles }
    }

    fn index(&self, values: &[&str]) -> Option<usize> {
        if values.len() != self.values.len() {
            return None;
        }
        let mut index = 0;
        for (value, allowed) in values.iter().zip(&self.values) {
            let at = allowed.iter().position(|a| a == value)?;
            index = index * allowed.len() + at;
        }
        Some(index)
    }
}

impl<T: Noop> Family<T> {
    /// The handle for `values` (one per label, in declaration order). A value outside the
    /// declared set is a programming error: debug builds panic, release builds record nothing.
    pub fn get(&self, values: &[&str]) -> &T {
        match self.index(values) {
            Some(i) => &self.handles[i],
            None => {
                debug_assert!(false, "label values {values:?} are not in the declared set");
                T::noop()
            }
        }
    }
}

/// Handles that can do nothing (for values outside a family's declared set).
pub trait Noop: 'static {
    fn noop() -> &'static Self;
}

static NOOP_COUNTER: Counter = Counter::noop();
static NOOP_GAUGE: Gauge = Gauge::noop();
static NOOP_HISTOGRAM: Histogram = Histogram::noop();

impl Noop for Counter {
    fn noop() -> &'static Self {
        &NOOP_COUNTER
    }
}

impl Noop for Gauge {
    fn noop() -> &'static Self {
        &NOOP_GAUGE
    }
}

impl Noop for Histogram {
    fn noop() -> &'static Self {
        &NOOP_HISTOGRAM
    }
}

/// Buckets from 0.5 ms to 30 s.
pub fn latency_buckets() -> Vec<f64> {
    vec![
        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    ]
}

/// One reading of a connection pool, taken when `/metrics` is scraped.
#[derive(Clone, Copy, Debug, Default)]
pub struct PoolSample {
    pub in_use: u32,
    pub idle: u32,
    pub max: u32,
}

impl Metrics {
    /// Registers the database pool gauges `braid_db_pool_connections{state="in_use"|"idle"}`
    /// and `braid_db_pool_max_connections`, read from the pool at scrape time (no background
    /// task, never stale); `sample` must be cheap (it runs on every scrape).
    pub fn register_pool(&self, sample: impl Fn() -> PoolSample + Send + Sync + 'static) {
        let sample: PoolSampler = Arc::new(sample);
        self.inner
            .pools
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(sample.clone());
        let help = "database pool connections by state";
        let in_use = self.gauge_with("db_pool_connections", help, &[("state", "in_use")]);
        let idle = self.gauge_with("db_pool_connections", help, &[("state", "idle")]);
        let max = self.gauge(
            "db_pool_max_connections",
            "database pool size limit (max_connections)",
        );
        self.on_scrape(move || {
            let s = sample();
            in_use.set(f64::from(s.in_use));
            idle.set(f64::from(s.idle));
            max.set(f64::from(s.max));
        });
    }

    /// A reading of every pool registered with [`Metrics::register_pool`], taken now.
    pub fn pool_samples(&self) -> Vec<PoolSample> {
        let pools: Vec<PoolSampler> = self
            .inner
            .pools
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        pools.iter().map(|sample| sample()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_carry_prefix_service_label_help_and_type() {
        let m = Metrics::new("svc");
        let c = m.counter_with("things_total", "things done", &[("kind", "a")]);
        c.increment(2);
        let g = m.gauge("depth", "queue depth");
        g.set(7.0);
        let text = m.render();
        assert!(
            text.contains("# HELP braid_things_total things done"),
            "{text}"
        );
        assert!(text.contains("# TYPE braid_things_total counter"), "{text}");
        assert!(
            text.contains("braid_things_total{service=\"svc\",kind=\"a\"} 2"),
            "{text}"
        );
        assert!(text.contains("# TYPE braid_depth gauge"), "{text}");
        assert!(text.contains("braid_depth{service=\"svc\"} 7"), "{text}");
        assert_eq!(m.value("braid_things_total", &[("kind", "a")]), Some(2.0));
        assert_eq!(m.value("braid_depth", &[]), Some(7.0));
        assert_eq!(m.value("braid_nothing", &[]), None);
    }

    #[test]
    fn histograms_keep_their_buckets() {
        let m = Metrics::new("svc");
        let latency = m.histogram_with("x_seconds", "latency", &[], &latency_buckets());
        latency.record(0.003);
        let sizes = m.histogram_with("batch_size", "sizes", &[], &[1.0, 2.0, 4.0]);
        sizes.record(3.0);
        let text = m.render();
        assert!(text.contains("# TYPE braid_x_seconds histogram"), "{text}");
        assert!(text.contains("braid_x_seconds_bucket{service=\"svc\",le=\"0.0025\"} 0"));
        assert!(text.contains("braid_x_seconds_bucket{service=\"svc\",le=\"0.005\"} 1"));
        assert!(text.contains("braid_x_seconds_bucket{service=\"svc\",le=\"30\"} 1"));
        assert!(text.contains("braid_x_seconds_count{service=\"svc\"} 1"));
        assert!(text.contains("# TYPE braid_batch_size histogram"), "{text}");
        assert!(text.contains("braid_batch_size_bucket{service=\"svc\",le=\"2\"} 0"));
        assert!(text.contains("braid_batch_size_bucket{service=\"svc\",le=\"4\"} 1"));
        assert!(!text.contains("braid_batch_size_bucket{service=\"svc\",le=\"30\"}"));
    }

    #[test]
    fn each_instance_shows_only_its_own_series() {
        let a = Metrics::new("a");
        let b = Metrics::new("b");
        a.counter("only_a_total", "a").increment(1);
        assert!(!b.render().contains("only_a_total"));
        assert!(a.render().contains("only_a_total"));
    }

    #[test]
    fn families_register_every_combination_and_pick_by_value() {
        let m = Metrics::new("svc");
        let f = m.counter_family(
            "ops_total",
            "ops",
            &[
                ("op", &["get", "set"]),
                ("result", &["ok", "error", "miss"]),
            ],
        );
        f.get(&["set", "miss"]).increment(1);
        f.get(&["get", "ok"]).increment(3);
        assert_eq!(
            m.value("braid_ops_total", &[("op", "set"), ("result", "miss")]),
            Some(1.0)
        );
        assert_eq!(
            m.value("braid_ops_total", &[("op", "get"), ("result", "ok")]),
            Some(3.0)
        );
        assert_eq!(m.value("braid_ops_total", &[]), Some(4.0));
        let series = m
            .render()
            .lines()
            .filter(|l| l.starts_with("braid_ops_total{"))
            .count();
        assert_eq!(series, 6);
    }

    #[test]
    fn pool_gauges_are_read_at_scrape_time() {
        let m = Metrics::new("svc");
        let n = Arc::new(std::sync::atomic::AtomicU32::new(1));
        let read = n.clone();
        m.register_pool(move || PoolSample {
            in_use: read.load(std::sync::atomic::Ordering::Relaxed),
            idle: 2,
            max: 10,
        });
        assert_eq!(
            m.value("braid_db_pool_connections", &[("state", "in_use")]),
            Some(1.0)
        );
        n.store(5, std::sync::atomic::Ordering::Relaxed);
        assert_eq!(
            m.value("braid_db_pool_connections", &[("state", "in_use")]),
            Some(5.0)
        );
        assert_eq!(m.value("braid_db_pool_max_connections", &[]), Some(10.0));
    }
}
