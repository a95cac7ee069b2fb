//! The engine's `UserStore` and `GroupStore` contracts against `DynamoUsers` / `DynamoGroups`
//! on moto, each test on its own fresh users table.

mod common;

use m365_aws::schema::USERS;
use m365_aws::{DynamoGroups, DynamoUsers};

common::contracts_on_tables!(
    users: USERS => DynamoUsers::new,
    groups: USERS => DynamoGroups::new,
);

mod adapter {
    //! Behaviour of the DynamoDB user and group stores beyond the ports' contracts.

    use m365_aws::schema::USERS;
    use m365_aws::{DynamoGroups, DynamoUsers};
    use m365_engine::model::{DirectoryUser, Email, Group, GroupId, PageRequest, UserId};
    use m365_engine::ports::{GroupStore, UserStore};

    use super::common;

    fn user(email: &Email) -> DirectoryUser {
        let id = fresh_user();
        DirectoryUser::new(id, email.clone(), "Racer")
    }

    #[tokio::test]
    async fn concurrent_creates_with_one_email_let_exactly_one_user_in() {
        // R-BIND-1: email uniqueness holds under concurrency (transactional claim).
        let Some((client, table)) = common::fresh_table(&USERS).await else {
            return;
        };
        let store = DynamoUsers::new(client, table);
        let email = Email::parse(&format!("{}@race.example", common::unique("x"))).expect("email");
        let racers: Vec<_> = (0..8).map(|_| user(&email)).collect();
        let results = futures::future::join_all(racers.iter().map(|u| store.create(u))).await;
        let won = results.iter().filter(|r| r.is_ok()).count();
        assert_eq!(won, 1, "{results:?}");
        assert!(
            results
                .iter()
                .filter_map(|r| r.as_ref().err())
                .all(|e| e.is_conflict("email_exists")),
            "{results:?}"
        );
        let holder = store
            .get_by_email(&email)
            .await
            .expect("read")
            .expect("one holder");
        assert!(racers.iter().any(|u| u.id == holder.id));
    }

    #[tokio::test]
    async fn a_cursor_of_the_user_listing_is_refused_by_the_group_listing() {
        // R-SAFE-1: a foreign cursor is bad input, not a 5xx.
        let Some((client, table)) = common::fresh_table(&USERS).await else {
            return;
        };
        let users = DynamoUsers::new(client.clone(), table.clone());
        for _ in 0..2 {
            let email =
                Email::parse(&format!("{}@list.example", common::unique("x"))).expect("email");
            users.create(&user(&email)).await.expect("created");
        }
        let page = users.list(&PageRequest::first(1)).await.expect("listed");
        let cursor = page.next.expect("a second page");
        let groups = DynamoGroups::new(client, table);
        let result = groups.list(&PageRequest::after(cursor, 1)).await;
        assert!(
            matches!(result, Err(m365_engine::Error::Invalid(_))),
            "got {result:?}"
        );
    }

    /// A group item as stored before membership items existed: no `members_indexed` mark.
    async fn put_legacy_group(client: &aws_sdk_dynamodb::Client, table: &str, group: &Group) {
        use aws_sdk_dynamodb::types::AttributeValue::{N, S};
        client
            .put_item()
            .table_name(table)
            .item("pk", S(format!("GROUP#{}", group.id)))
            .item("sk", S("GROUP".into()))
            .item("list_pk", S("GROUP".into()))
            .item("list_sk", S(group.id.to_string()))
            .item("version", N("1".into()))
            .item("doc", S(serde_json::to_string(group).expect("json")))
            .send()
            .await
            .expect("legacy group written");
    }

    /// The shared users table on moto and the group store over it (`None`: no moto).
    async fn groups_on_moto() -> Option<(aws_sdk_dynamodb::Client, String, DynamoGroups)> {
        let config = common::aws().await?;
        let (client, table) = common::table(&config, &USERS).await;
        let groups = DynamoGroups::new(client.clone(), table.clone());
        Some((client, table, groups))
    }

    /// The groups `member` is found in; the query must succeed.
    async fn groups_of(groups: &DynamoGroups, member: &UserId) -> Vec<Group> {
        groups.groups_of_member(member).await.expect("query")
    }

    fn fresh_user() -> UserId {
        UserId::parse(common::unique("u")).expect("id")
    }

    #[tokio::test]
    async fn a_group_stored_before_membership_items_is_found_by_member_after_its_next_write() {
        // R-GRP-1 (issue 13): groups written before the member index are backfilled on write.
        let Some((client, table, groups)) = groups_on_moto().await else {
            return;
        };
        let alice = fresh_user();
        let mut legacy = Group::new(
            GroupId::parse(common::unique("g")).expect("id"),
            "Legacy",
            [alice.clone()],
        );
        legacy.version = 1;
        put_legacy_group(&client, &table, &legacy).await;
        assert!(
            groups_of(&groups, &alice).await.is_empty(),
            "no membership item yet"
        );
        let mut renamed = legacy.clone();
        renamed.name = "Renamed".to_owned();
        let stored = groups.replace(&renamed, 1).await.expect("replaced");
        assert_eq!(
            groups_of(&groups, &alice).await,
            vec![stored],
            "the write indexed every member"
        );
    }

    #[tokio::test]
    async fn a_leftover_membership_item_is_not_taken_for_a_membership() {
        // R-GRP-1 (issue 13): an item left by an interrupted write names a group that does not
        // list the user; the read checks the group.
        let Some((client, table, groups)) = groups_on_moto().await else {
            return;
        };
        let (alice, bob) = (fresh_user(), fresh_user());
        let group = groups
            .create(&Group::new(
                GroupId::parse(common::unique("g")).expect("id"),
                "G",
                [bob],
            ))
            .await
            .expect("created");
        use aws_sdk_dynamodb::types::AttributeValue::{N, S};
        client
            .put_item()
            .table_name(&table)
            .item("pk", S(format!("MEMBER#{alice}")))
            .item("sk", S(format!("GROUP#{}", group.id)))
            .item("group_id", S(group.id.to_string()))
            .item("group_version", N("2".into()))
            .send()
            .await
            .expect("leftover written");
        assert!(
            groups_of(&groups, &alice).await.is_empty(),
            "the group does not list Alice"
        );
    }
}
