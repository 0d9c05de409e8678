//! vector-search's own part of the status view (`braid.v1.ServiceStatus`): where searches
//! read (the replica, or the primary and why), the replica's pool next to the primary's (which
//! the host reports), and the vector index: its estimated chunk count, HNSW size and the
//! `ef_search` searches run with.

use braid_proto::v1::{IndexStatus, PoolStatus, ServiceStatusReport, StatusDetail};

use crate::store::Store;

pub async fn part(store: Store) -> ServiceStatusReport {
    let pools = store
        .replica_pool_sample()
        .map(|s| PoolStatus {
            name: "database:replica".into(),
            max: s.max,
            idle: s.idle,
            in_use: s.in_use,
        })
        .into_iter()
        .collect();
    let index = match store.index_estimate().await {
        Ok((rows, bytes)) => IndexStatus {
            name: "vector".into(),
            generation: String::new(),
            fault: String::new(),
            detail: index_detail(rows, bytes, store.ef_search()),
        },
        Err(e) => IndexStatus {
            name: "vector".into(),
            fault: format!("status unavailable: {e}"),
            ..Default::default()
        },
    };
    ServiceStatusReport {
        pools,
        indexes: vec![index],
        details: vec![StatusDetail {
            key: "reads".into(),
            value: store.read_route(),
        }],
        ..Default::default()
    }
}

fn index_detail(rows: i64, bytes: i64, ef_search: u32) -> String {
    let rows = if rows < 0 {
        "chunks not yet counted (no ANALYZE)".to_string()
    } else {
        format!("~{rows} chunks")
    };
    let bytes = bytes.max(0) as f64;
    let size = if bytes < 1024.0 * 1024.0 {
        format!("{:.0} KiB", bytes / 1024.0)
    } else {
        format!("{:.1} MiB", bytes / (1024.0 * 1024.0))
    };
    format!("{rows}, HNSW {size}, ef_search {ef_search}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_index_line_reads_the_estimate_or_says_it_has_none() {
        assert_eq!(
            index_detail(5183, 3 * 1024 * 1024, 100),
            "~5183 chunks, HNSW 3.0 MiB, ef_search 100"
        );
        assert_eq!(
            index_detail(-1, 16384, 40),
            "chunks not yet counted (no ANALYZE), HNSW 16 KiB, ef_search 40"
        );
    }
}
