//! Jobs and their version history.
//!
//! A job is an id and a numbered list of definitions (its JSON, kept as
//! put). Putting a different definition adds a version; deleting is soft,
//! so the history stays and putting the job again continues its numbering.

/// One version of a job, field for field as in the `job_versions` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobVersionRow {
    /// The job's id.
    pub job_id: String,
    /// The version number, from 1.
    pub version: i64,
    /// The job's JSON, byte for byte as put.
    pub definition: String,
    /// When this version was put.
    pub created_at_us: i64,
}

#[cfg(test)]
mod tests {
    use super::*;
    #[allow(unused_imports)]
    use crate::store::{INTERRUPTED, Store, StoreError};

    crate::store_test! {
        async fn versions_are_added_only_when_the_definition_changes(store) {
            assert_eq!(store.put_job("a", r#"{"v":1}"#, 10).await.unwrap(), 1);
            assert_eq!(store.put_job("a", r#"{"v":1}"#, 11).await.unwrap(), 1);
            // Byte for byte: the same JSON spelt differently is a new version.
            assert_eq!(store.put_job("a", r#"{ "v":1}"#, 12).await.unwrap(), 2);
            assert_eq!(store.put_job("a", r#"{"v":3}"#, 13).await.unwrap(), 3);
            let current = store.get_job("a").await.unwrap().unwrap();
            assert_eq!(
                current,
                JobVersionRow {
                    job_id: "a".into(),
                    version: 3,
                    definition: r#"{"v":3}"#.into(),
                    created_at_us: 13,
                }
            );
            let versions = store.list_job_versions("a").await.unwrap();
            assert_eq!(
                versions.iter().map(|v| v.version).collect::<Vec<_>>(),
                [1, 2, 3]
            );
            assert_eq!(versions[0].created_at_us, 10);
            assert_eq!(
                store
                    .get_job_version("a", 2)
                    .await
                    .unwrap()
                    .unwrap()
                    .definition,
                r#"{ "v":1}"#
            );
            assert_eq!(store.get_job_version("a", 4).await.unwrap(), None);
            assert_eq!(store.get_job("missing").await.unwrap(), None);
            assert!(store.list_job_versions("missing").await.unwrap().is_empty());
        }
    }

    crate::store_test! {
        async fn a_deleted_job_keeps_its_history_and_continues_its_numbering(store) {
            store.put_job("a", "one", 1).await.unwrap();
            store.put_job("a", "two", 2).await.unwrap();
            store.delete_job("a", 3).await.unwrap();
            assert_eq!(store.get_job("a").await.unwrap(), None);
            assert!(matches!(
                store.delete_job("a", 4).await,
                Err(StoreError::NotFound { what: "job", .. })
            ));
            assert!(matches!(
                store.delete_job("missing", 4).await,
                Err(StoreError::NotFound { .. })
            ));
            // History stays readable.
            assert_eq!(
                store
                    .get_job_version("a", 1)
                    .await
                    .unwrap()
                    .unwrap()
                    .definition,
                "one"
            );
            assert_eq!(store.list_job_versions("a").await.unwrap().len(), 2);
            assert!(store.list_jobs(None, 10).await.unwrap().is_empty());
            // Put again: it comes back with the next version.
            assert_eq!(store.put_job("a", "three", 5).await.unwrap(), 3);
            assert_eq!(store.get_job("a").await.unwrap().unwrap().version, 3);
            // Deleted then put unchanged: it comes back at the same version.
            store.delete_job("a", 6).await.unwrap();
            assert_eq!(store.put_job("a", "three", 7).await.unwrap(), 3);
            assert_eq!(
                store.get_job("a").await.unwrap().unwrap().definition,
                "three"
            );
            assert_eq!(store.list_job_versions("a").await.unwrap().len(), 3);
        }
    }

    crate::store_test! {
        async fn live_jobs_page_by_id(store) {
            for id in ["d", "b", "a", "e", "c"] {
                store.put_job(id, id, 1).await.unwrap();
            }
            store.put_job("b", "b2", 2).await.unwrap();
            store.delete_job("c", 3).await.unwrap();
            let first = store.list_jobs(None, 2).await.unwrap();
            assert_eq!(
                first.iter().map(|j| j.job_id.as_str()).collect::<Vec<_>>(),
                ["a", "b"]
            );
            assert_eq!((first[1].version, first[1].definition.as_str()), (2, "b2"));
            let second = store.list_jobs(Some("b"), 2).await.unwrap();
            assert_eq!(
                second.iter().map(|j| j.job_id.as_str()).collect::<Vec<_>>(),
                ["d", "e"]
            );
            assert!(store.list_jobs(Some("e"), 2).await.unwrap().is_empty());
        }
    }

    #[tokio::test]
    async fn jobs_persist_in_the_file_store() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("meridian.db");
        {
            let store = Store::open_sqlite(&path).await.unwrap();
            assert_eq!(store.put_job("a", "one", 1).await.unwrap(), 1);
            assert_eq!(store.put_job("a", "two", 2).await.unwrap(), 2);
        }
        let store = Store::open_sqlite(&path).await.unwrap();
        assert_eq!(store.get_job("a").await.unwrap().unwrap().definition, "two");
        assert_eq!(store.put_job("a", "two", 3).await.unwrap(), 2);
        // Concurrent puts of one job serialise: each gets its own version.
        let puts = (0..8).map(|i| {
            let store = store.clone();
            async move { store.put_job("a", &format!("v{i}"), 10 + i).await }
        });
        let mut got: Vec<i64> = futures::future::join_all(puts)
            .await
            .into_iter()
            .map(|r| r.unwrap())
            .collect();
        got.sort();
        assert_eq!(got, (3..=10).collect::<Vec<_>>());
    }
}
