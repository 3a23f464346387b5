//! Organizations, users and memberships.

use anyhow::Context;

use super::Db;
use crate::domain::ids::{OrgId, UserId};
use crate::domain::permissions::{MembershipRefusal, Role, check_membership_change};
use crate::{on_pool, on_writer};

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct OrgRow {
    pub id: i64,
    pub slug: String,
    pub name: String,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct UserRow {
    pub id: i64,
    pub email: String,
    pub name: String,
    pub password_hash: String,
    pub must_change_password: bool,
    pub disabled: bool,
}

/// A signed-in user in their current org, as one row.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct IdentityRow {
    pub user_id: i64,
    pub email: String,
    pub name: String,
    pub disabled: bool,
    pub must_change_password: bool,
    pub role: String,
    pub org_id: i64,
    pub org_slug: String,
    pub org_name: String,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct MemberRow {
    pub user_id: i64,
    pub email: String,
    pub name: String,
    pub role: String,
    pub disabled: bool,
    pub must_change_password: bool,
    pub created_at: i64,
}

pub async fn count_orgs(db: &Db) -> anyhow::Result<i64> {
    on_pool!(db, p => sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM organizations").fetch_one(p).await)
        .context("counting organizations")
}

pub async fn org_by_slug(db: &Db, slug: &str) -> anyhow::Result<Option<OrgRow>> {
    on_pool!(db, p => sqlx::query_as::<_, OrgRow>("SELECT id, slug, name FROM organizations WHERE slug = $1")
        .bind(slug)
        .fetch_optional(p)
        .await)
    .context("loading organization")
}

/// Creates the org, or returns the existing one with that slug.
pub async fn ensure_org(db: &Db, slug: &str, name: &str) -> anyhow::Result<(OrgId, bool)> {
    if let Some(o) = org_by_slug(db, slug).await? {
        return Ok((OrgId::new(o.id), false));
    }
    let id = on_writer!(db, p => sqlx::query_scalar::<_, i64>(
        "INSERT INTO organizations (slug, name, created_at) VALUES ($1, $2, $3) RETURNING id",
    )
    .bind(slug)
    .bind(name)
    .bind(crate::now())
    .fetch_one(p)
    .await)
    .context("creating organization")?;
    Ok((OrgId::new(id), true))
}

pub async fn user_by_email(db: &Db, email: &str) -> anyhow::Result<Option<UserRow>> {
    on_pool!(db, p => sqlx::query_as::<_, UserRow>(
        "SELECT id, email, name, password_hash, must_change_password, disabled FROM users WHERE email = $1",
    )
    .bind(email)
    .fetch_optional(p)
    .await)
    .context("loading user")
}

pub async fn user_by_id(db: &Db, id: UserId) -> anyhow::Result<Option<UserRow>> {
    on_pool!(db, p => sqlx::query_as::<_, UserRow>(
        "SELECT id, email, name, password_hash, must_change_password, disabled FROM users WHERE id = $1",
    )
    .bind(id.get())
    .fetch_optional(p)
    .await)
    .context("loading user")
}

pub async fn create_user(
    db: &Db,
    email: &str,
    name: &str,
    password_hash: &str,
    must_change_password: bool,
) -> anyhow::Result<UserId> {
    let now = crate::now();
    let id = on_writer!(db, p => sqlx::query_scalar::<_, i64>(
        "INSERT INTO users (email, name, password_hash, must_change_password, disabled, created_at, updated_at)
         VALUES ($1, $2, $3, $4, FALSE, $5, $5) RETURNING id",
    )
    .bind(email)
    .bind(name)
    .bind(password_hash)
    .bind(must_change_password)
    .bind(now)
    .fetch_one(p)
    .await)
    .context("creating user")?;
    Ok(UserId::new(id))
}

pub async fn set_password(db: &Db, user: UserId, password_hash: &str, must_change: bool) -> anyhow::Result<()> {
    on_writer!(db, p => sqlx::query(
        "UPDATE users SET password_hash = $2, must_change_password = $3, updated_at = $4 WHERE id = $1",
    )
    .bind(user.get())
    .bind(password_hash)
    .bind(must_change)
    .bind(crate::now())
    .execute(p)
    .await
    .map(|r| r.rows_affected()))
    .context("setting password")?;
    Ok(())
}

pub async fn set_disabled(db: &Db, user: UserId, disabled: bool) -> anyhow::Result<()> {
    on_writer!(db, p => sqlx::query("UPDATE users SET disabled = $2, updated_at = $3 WHERE id = $1")
        .bind(user.get())
        .bind(disabled)
        .bind(crate::now())
        .execute(p)
        .await
        .map(|r| r.rows_affected()))
    .context("disabling user")?;
    Ok(())
}

/// Gives `user` the role in `org`, adding the membership when missing.
pub async fn upsert_membership(db: &Db, org: OrgId, user: UserId, role: Role) -> anyhow::Result<()> {
    on_writer!(db, p => sqlx::query(
        "INSERT INTO memberships (org_id, user_id, role, created_at) VALUES ($1, $2, $3, $4)
         ON CONFLICT (org_id, user_id) DO UPDATE SET role = excluded.role",
    )
    .bind(org.get())
    .bind(user.get())
    .bind(role.as_str())
    .bind(crate::now())
    .execute(p)
    .await
    .map(|r| r.rows_affected()))
    .context("saving membership")?;
    Ok(())
}

/// The user in that org, or None when they are not (or no longer) a member.
pub async fn identity(db: &Db, org: OrgId, user: UserId) -> anyhow::Result<Option<IdentityRow>> {
    on_pool!(db, p => sqlx::query_as::<_, IdentityRow>(
        "SELECT u.id AS user_id, u.email, u.name, u.disabled, u.must_change_password, m.role,
                o.id AS org_id, o.slug AS org_slug, o.name AS org_name
         FROM users u
         JOIN memberships m ON m.user_id = u.id
         JOIN organizations o ON o.id = m.org_id
         WHERE o.id = $1 AND u.id = $2",
    )
    .bind(org.get())
    .bind(user.get())
    .fetch_optional(p)
    .await)
    .context("loading identity")
}

/// The orgs a user belongs to, by name.
pub async fn orgs_of_user(db: &Db, user: UserId) -> anyhow::Result<Vec<OrgRow>> {
    on_pool!(db, p => sqlx::query_as::<_, OrgRow>(
        "SELECT o.id, o.slug, o.name FROM organizations o JOIN memberships m ON m.org_id = o.id
         WHERE m.user_id = $1 ORDER BY o.name, o.id",
    )
    .bind(user.get())
    .fetch_all(p)
    .await)
    .context("loading the user's organizations")
}

/// The org to open for a user: the one they last switched to if they still belong to it,
/// else the one they joined first. Being added to another org never changes it.
pub async fn preferred_org(db: &Db, user: UserId) -> anyhow::Result<Option<OrgRow>> {
    on_pool!(db, p => sqlx::query_as::<_, OrgRow>(
        "SELECT o.id, o.slug, o.name FROM organizations o
         JOIN memberships m ON m.org_id = o.id
         JOIN users u ON u.id = m.user_id
         WHERE m.user_id = $1
         ORDER BY CASE WHEN o.id = u.last_org_id THEN 0 ELSE 1 END, m.created_at, o.id
         LIMIT 1",
    )
    .bind(user.get())
    .fetch_optional(p)
    .await)
    .context("choosing the user's organization")
}

pub async fn set_last_org(db: &Db, user: UserId, org: OrgId) -> anyhow::Result<()> {
    on_writer!(db, p => sqlx::query("UPDATE users SET last_org_id = $2 WHERE id = $1")
        .bind(user.get())
        .bind(org.get())
        .execute(p)
        .await
        .map(|r| r.rows_affected()))
    .context("remembering the organization")?;
    Ok(())
}

pub async fn count_members(db: &Db, org: OrgId) -> anyhow::Result<i64> {
    on_pool!(db, p => sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM memberships WHERE org_id = $1")
        .bind(org.get())
        .fetch_one(p)
        .await)
    .context("counting members")
}

macro_rules! member_select {
    () => {
        "SELECT u.id AS user_id, u.email, u.name, m.role, u.disabled, u.must_change_password, m.created_at
         FROM memberships m JOIN users u ON u.id = m.user_id"
    };
}

pub async fn members(db: &Db, org: OrgId, limit: i64, offset: i64) -> anyhow::Result<Vec<MemberRow>> {
    let sql = concat!(member_select!(), " WHERE m.org_id = $1 ORDER BY u.email LIMIT $2 OFFSET $3");
    on_pool!(db, p => sqlx::query_as::<_, MemberRow>(sql)
        .bind(org.get())
        .bind(limit)
        .bind(offset)
        .fetch_all(p)
        .await)
    .context("listing members")
}

pub async fn member(db: &Db, org: OrgId, user: UserId) -> anyhow::Result<Option<MemberRow>> {
    let sql = concat!(member_select!(), " WHERE m.org_id = $1 AND m.user_id = $2");
    on_pool!(db, p => sqlx::query_as::<_, MemberRow>(sql)
        .bind(org.get())
        .bind(user.get())
        .fetch_optional(p)
        .await)
    .context("loading member")
}

/// What became of a request to change or remove a membership.
#[derive(Debug, PartialEq, Eq)]
pub enum MembershipChange {
    Done { previous: Role },
    NotFound,
    Refused(MembershipRefusal),
}

/// Changes the member's role (`Some`) or removes them (`None`), in one transaction that
/// re-counts the owners under a lock so two owners cannot demote each other at once.
pub async fn change_membership(
    db: &Db,
    org: OrgId,
    user: UserId,
    new: Option<Role>,
) -> anyhow::Result<MembershipChange> {
    on_pool!(db, p => {
        let mut tx = crate::begin_write!(db, p).context("starting transaction")?;
        if matches!(db, Db::Postgres(_)) {
            sqlx::query("SELECT id FROM organizations WHERE id = $1 FOR UPDATE")
                .bind(org.get())
                .execute(&mut *tx)
                .await
                .context("locking organization")?;
        }
        let current: Option<String> =
            sqlx::query_scalar("SELECT role FROM memberships WHERE org_id = $1 AND user_id = $2")
                .bind(org.get())
                .bind(user.get())
                .fetch_optional(&mut *tx)
                .await
                .context("loading membership")?;
        let Some(current) = current else {
            return Ok(MembershipChange::NotFound);
        };
        let current = Role::parse(&current).map_err(anyhow::Error::msg)?;
        let owners: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM memberships WHERE org_id = $1 AND role = 'owner'")
                .bind(org.get())
                .fetch_one(&mut *tx)
                .await
                .context("counting owners")?;
        if let Err(refusal) = check_membership_change(current, new, owners) {
            return Ok(MembershipChange::Refused(refusal));
        }
        match new {
            Some(role) => {
                sqlx::query("UPDATE memberships SET role = $3 WHERE org_id = $1 AND user_id = $2")
                    .bind(org.get())
                    .bind(user.get())
                    .bind(role.as_str())
                    .execute(&mut *tx)
                    .await
                    .context("changing role")?;
            }
            None => {
                sqlx::query("DELETE FROM memberships WHERE org_id = $1 AND user_id = $2")
                    .bind(org.get())
                    .bind(user.get())
                    .execute(&mut *tx)
                    .await
                    .context("removing member")?;
            }
        }
        tx.commit().await.context("committing membership change")?;
        Ok(MembershipChange::Done { previous: current })
    })
}

/// What adding a member by email did.
#[derive(Debug, PartialEq, Eq)]
pub enum AddMember {
    /// A new user was created with the one-time password the caller hashed.
    Created(UserId),
    /// An existing user joined the org; their password is unchanged.
    AddedExisting(UserId),
    AlreadyMember,
}

/// Adds the user with that email to the org, creating them with `new_user_hash`
/// (a one-time password) when no such user exists.
pub async fn add_member(
    db: &Db,
    org: OrgId,
    email: &str,
    name: &str,
    role: Role,
    new_user_hash: &str,
) -> anyhow::Result<AddMember> {
    // Two requests adding the same new person at once: one creates the user, the other
    // hits the unique email and, on its second try, finds the user and adds them.
    match add_member_once(db, org, email, name, role, new_user_hash).await {
        Err(e) if e.downcast_ref::<sqlx::Error>().is_some_and(super::is_unique_violation) => {
            add_member_once(db, org, email, name, role, new_user_hash).await
        }
        other => other,
    }
}

async fn add_member_once(
    db: &Db,
    org: OrgId,
    email: &str,
    name: &str,
    role: Role,
    new_user_hash: &str,
) -> anyhow::Result<AddMember> {
    let now = crate::now();
    on_pool!(db, p => {
        let mut tx = crate::begin_write!(db, p).context("starting transaction")?;
        let existing: Option<i64> = sqlx::query_scalar("SELECT id FROM users WHERE email = $1")
            .bind(email)
            .fetch_optional(&mut *tx)
            .await
            .context("looking up user")?;
        let (user, created) = match existing {
            Some(id) => {
                let member: Option<String> =
                    sqlx::query_scalar("SELECT role FROM memberships WHERE org_id = $1 AND user_id = $2")
                        .bind(org.get())
                        .bind(id)
                        .fetch_optional(&mut *tx)
                        .await
                        .context("loading membership")?;
                if member.is_some() {
                    return Ok(AddMember::AlreadyMember);
                }
                (id, false)
            }
            None => {
                let id: i64 = sqlx::query_scalar(
                    "INSERT INTO users (email, name, password_hash, must_change_password, disabled, created_at, updated_at, last_org_id)
                     VALUES ($1, $2, $3, TRUE, FALSE, $4, $4, $5) RETURNING id",
                )
                .bind(email)
                .bind(name)
                .bind(new_user_hash)
                .bind(now)
                .bind(org.get())
                .fetch_one(&mut *tx)
                .await
                .context("creating user")?;
                (id, true)
            }
        };
        sqlx::query("INSERT INTO memberships (org_id, user_id, role, created_at) VALUES ($1, $2, $3, $4)")
            .bind(org.get())
            .bind(user)
            .bind(role.as_str())
            .bind(now)
            .execute(&mut *tx)
            .await
            .context("adding membership")?;
        tx.commit().await.context("committing new member")?;
        let user = UserId::new(user);
        Ok(if created { AddMember::Created(user) } else { AddMember::AddedExisting(user) })
    })
}
