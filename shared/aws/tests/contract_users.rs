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
    use m365_engine::model::{DirectoryUser, Email, PageRequest, UserId};
    use m365_engine::ports::{GroupStore, UserStore};

    use super::common;

    fn user(email: &Email) -> DirectoryUser {
        let id = UserId::parse(common::unique("u")).expect("id");
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
}
