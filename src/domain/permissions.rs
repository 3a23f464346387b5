//! Permissions and the built-in roles that grant them.
//!
//! The permission names are the seeds' own; `pf.members.manage` is the org-owner
//! management right. A role is a fixed set of permissions; a membership holds one role.

use std::fmt;

/// One thing a member may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Permission {
    ImportUpload,
    ExportRequestsView,
    ExportRequestsCreate,
    MarketplaceImport,
    MembersManage,
}

impl Permission {
    pub const ALL: [Permission; 5] = [
        Permission::ImportUpload,
        Permission::ExportRequestsView,
        Permission::ExportRequestsCreate,
        Permission::MarketplaceImport,
        Permission::MembersManage,
    ];

    /// The permission's name as the product writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Permission::ImportUpload => "pf.import.upload",
            Permission::ExportRequestsView => "pf.export_requests.view",
            Permission::ExportRequestsCreate => "pf.export_requests.create",
            Permission::MarketplaceImport => "cl.marketplace.import",
            Permission::MembersManage => "pf.members.manage",
        }
    }

    /// Its name in plain words, shown before the code.
    pub fn label(self) -> &'static str {
        match self {
            Permission::ImportUpload => "Imports",
            Permission::ExportRequestsView => "See exports",
            Permission::ExportRequestsCreate => "Request exports",
            Permission::MarketplaceImport => "Marketplace imports",
            Permission::MembersManage => "Manage members",
        }
    }

    /// What holding it lets a member do, in plain words.
    pub fn description(self) -> &'static str {
        match self {
            Permission::ImportUpload => "Upload and run imports, see Import History, roll imports back",
            Permission::ExportRequestsView => "See Data Exports and download completed exports",
            Permission::ExportRequestsCreate => "Request new data exports",
            Permission::MarketplaceImport => "Import marketplace content bundles and roll them back",
            Permission::MembersManage => "Manage members, their roles and API keys",
        }
    }
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A built-in role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    Owner,
    Importer,
    Exporter,
    Viewer,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Owner, Role::Importer, Role::Exporter, Role::Viewer];

    /// Parses the stored or submitted role name.
    pub fn parse(s: &str) -> Result<Role, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "owner" => Ok(Role::Owner),
            "importer" => Ok(Role::Importer),
            "exporter" => Ok(Role::Exporter),
            "viewer" => Ok(Role::Viewer),
            other => Err(format!("\"{other}\" is not a role (expected owner, importer, exporter or viewer)")),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Owner => "owner",
            Role::Importer => "importer",
            Role::Exporter => "exporter",
            Role::Viewer => "viewer",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Role::Owner => "Owner",
            Role::Importer => "Importer",
            Role::Exporter => "Exporter",
            Role::Viewer => "Viewer",
        }
    }

    /// The permissions this role grants.
    pub fn permissions(self) -> &'static [Permission] {
        use Permission::*;
        match self {
            Role::Owner => &Permission::ALL,
            Role::Importer => &[ImportUpload, MarketplaceImport, ExportRequestsView],
            Role::Exporter => &[ExportRequestsView, ExportRequestsCreate],
            Role::Viewer => &[ExportRequestsView],
        }
    }

    pub fn grants(self, p: Permission) -> bool {
        self.permissions().contains(&p)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a change to an org's memberships is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MembershipRefusal {
    LastOwner,
}

impl fmt::Display for MembershipRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MembershipRefusal::LastOwner => {
                f.write_str("An organization needs at least one owner: make another member an owner first.")
            }
        }
    }
}

/// May a member whose role is `current` get `new` (None: be removed), given how many
/// owners the org has? The last owner can be neither removed nor demoted.
pub fn check_membership_change(current: Role, new: Option<Role>, owner_count: i64) -> Result<(), MembershipRefusal> {
    let loses_owner = current == Role::Owner && new != Some(Role::Owner);
    if loses_owner && owner_count <= 1 {
        return Err(MembershipRefusal::LastOwner);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_permission_has_its_own_plain_name() {
        let labels: std::collections::HashSet<&str> = Permission::ALL.iter().map(|p| p.label()).collect();
        assert_eq!(labels.len(), Permission::ALL.len());
        assert!(Permission::ALL.iter().all(|p| !p.label().contains('.') && p.label() != p.as_str()));
        assert_eq!(Permission::ImportUpload.label(), "Imports");
    }

    #[test]
    fn owner_holds_every_permission() {
        for p in Permission::ALL {
            assert!(Role::Owner.grants(p), "{p}");
        }
    }

    #[test]
    fn roles_grant_what_the_readme_says() {
        assert!(Role::Importer.grants(Permission::ImportUpload));
        assert!(Role::Importer.grants(Permission::MarketplaceImport));
        assert!(!Role::Importer.grants(Permission::ExportRequestsCreate));
        assert!(!Role::Importer.grants(Permission::MembersManage));
        assert!(Role::Exporter.grants(Permission::ExportRequestsCreate));
        assert!(!Role::Exporter.grants(Permission::ImportUpload));
        assert_eq!(Role::Viewer.permissions(), &[Permission::ExportRequestsView]);
    }

    #[test]
    fn the_permission_matrix_matches_the_readme() {
        // rows: permissions in Permission::ALL order; columns: owner, importer, exporter, viewer
        let expected = [
            [true, true, false, false],  // pf.import.upload
            [true, true, true, true],    // pf.export_requests.view
            [true, false, true, false],  // pf.export_requests.create
            [true, true, false, false],  // cl.marketplace.import
            [true, false, false, false], // pf.members.manage
        ];
        for (p, row) in Permission::ALL.iter().zip(expected) {
            for (r, want) in Role::ALL.iter().zip(row) {
                assert_eq!(r.grants(*p), want, "{r} {p}");
            }
        }
    }

    #[test]
    fn role_names_round_trip_and_bad_names_are_explained() {
        for r in Role::ALL {
            assert_eq!(Role::parse(r.as_str()), Ok(r));
        }
        assert_eq!(Role::parse(" Owner "), Ok(Role::Owner));
        let err = Role::parse("admin").err().unwrap_or_default();
        assert!(err.contains("\"admin\" is not a role"), "{err}");
    }

    #[test]
    fn last_owner_cannot_be_removed_or_demoted() {
        assert_eq!(check_membership_change(Role::Owner, None, 1), Err(MembershipRefusal::LastOwner));
        assert_eq!(check_membership_change(Role::Owner, Some(Role::Viewer), 1), Err(MembershipRefusal::LastOwner));
        assert_eq!(check_membership_change(Role::Owner, Some(Role::Owner), 1), Ok(()));
        assert_eq!(check_membership_change(Role::Owner, None, 2), Ok(()));
        assert_eq!(check_membership_change(Role::Viewer, None, 1), Ok(()));
    }
}
