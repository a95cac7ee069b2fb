//! The engine's [`UserDeltas`] and [`GroupDeltas`] ports over [`GraphDirectory::users_delta`] and
//! [`GraphDirectory::groups_delta`] (graph-spec §5): Graph's delta in our words, for reconcile
//! (R-REC-1). Group members other than users (nested groups, devices) are left out: only users
//! and security groups are synced (R-GRP-1). A `DeltaUser` reports "at least" the
//! changed properties; an absent property stays `None` (not known), so reconcile compares only
//! what is reported.

use m365_engine::Result;
use m365_engine::model::{M365ObjectId, TenantId};
use m365_engine::ports::{
    DeltaLink, GroupDeltaPage, GroupDeltas, GroupMembershipChange, UserChange, UserDeltaPage,
    UserDeltas,
};

use crate::client::TokenProvider;
use crate::delta::{DeltaGroup, DeltaNext, DeltaUser};
use crate::directory::GraphDirectory;
use crate::error::GraphError;

fn change_of(user: DeltaUser) -> Result<UserChange> {
    let removed = user.removed().is_some();
    Ok(UserChange {
        id: object_id(user.id)?,
        removed,
        display_name: user.display_name,
        given_name: user.given_name,
        surname: user.surname,
        job_title: user.job_title,
        department: user.department,
        attributes: user.attributes,
        account_enabled: user.account_enabled,
        last_password_change: user.last_password_change_date_time,
        // The last `manager@delta` entry: an assignment, or a removal (R-ATTR-1).
        manager: user.manager_delta.map(|refs| {
            refs.into_iter()
                .last()
                .filter(|r| !r.is_removed())
                .and_then(|r| M365ObjectId::parse(r.id).ok())
        }),
    })
}

fn object_id(raw: String) -> Result<M365ObjectId> {
    Ok(M365ObjectId::parse(raw).map_err(|_| GraphError::InvalidId)?)
}

fn link_of(next: DeltaNext) -> DeltaLink {
    match next {
        DeltaNext::Page(next) => DeltaLink::More(next),
        DeltaNext::Done(done) => DeltaLink::Done(done),
    }
}

fn group_change_of(group: DeltaGroup) -> Result<GroupMembershipChange> {
    let removed = group.removed().is_some();
    let mut added = Vec::new();
    let mut dropped = Vec::new();
    for member in group.members_delta.into_iter().filter(|m| m.is_user()) {
        let gone = member.is_removed();
        let id = object_id(member.id)?;
        if gone {
            dropped.push(id);
        } else {
            added.push(id);
        }
    }
    Ok(GroupMembershipChange {
        id: object_id(group.id)?,
        removed,
        added,
        dropped,
    })
}

/// Implements a delta port on [`GraphDirectory`]: Graph's page in the engine's terms, each item
/// converted by `$convert`, with the link to follow and whether Graph restarted the listing.
macro_rules! delta_port {
    ($port:ident::$method:ident -> $page:ident, $convert:expr) => {
        impl<P: TokenProvider> $port for GraphDirectory<P> {
            async fn $method(&self, tenant: &TenantId, link: Option<&str>) -> Result<$page> {
                let page = GraphDirectory::$method(self, tenant, link).await?;
                Ok($page {
                    changes: page
                        .items
                        .into_iter()
                        .map($convert)
                        .collect::<Result<Vec<_>>>()?,
                    next: link_of(page.next),
                    restarted: page.restarted,
                })
            }
        }
    };
}

delta_port!(GroupDeltas::groups_delta -> GroupDeltaPage, group_change_of);
delta_port!(UserDeltas::users_delta -> UserDeltaPage, change_of);
