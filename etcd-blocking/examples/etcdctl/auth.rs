//! `auth enable|disable|status`, `user ...` and `role ...`.

use etcd_blocking::prefix_range_end;
use etcd_blocking::proto::authpb;
use etcd_blocking::proto::etcdserverpb as pb;
use etcd_blocking::EtcdErrorKind;

use crate::cli::{ask_password, scan_word};
use crate::ctx::{fail, go_err, out, outln, Ctx, Format, EXIT_BAD_ARGS, EXIT_ERROR};
use crate::gofmt::{go_quote, go_quote_str};
use crate::json;
use crate::print::{fields_hdr, protobuf};

/// Prints a response that carries only a header: `simple` text, or the header.
fn print_plain(ctx: &Ctx, simple: &str, header: &Option<pb::ResponseHeader>, fields: bool) {
    match ctx.format {
        Format::Simple => outln(simple),
        Format::Json => outln(json::header_only(header)),
        Format::Fields if fields => fields_hdr(header),
        Format::Protobuf => protobuf(&pb::AuthUserAddResponse { header: *header }),
        f => f.unsupported(),
    }
}

fn no_args(args: &[String], msg: &str) {
    if !args.is_empty() {
        fail(EXIT_BAD_ARGS, msg);
    }
}

pub fn auth_enable(ctx: &mut Ctx, args: Vec<String>) {
    no_args(&args, "auth enable command does not accept any arguments");
    ctx.client();
    loop {
        match ctx.call(pb::AuthEnableRequest {}) {
            Ok(_) => break,
            Err(e) if e.etcd_kind() == Some(EtcdErrorKind::RootRoleNotExist) => {
                if let Err(e) = ctx.call(pb::AuthRoleAddRequest {
                    name: "root".into(),
                }) {
                    fail(EXIT_ERROR, go_err(&e));
                }
                if let Err(e) = ctx.call(pb::AuthUserGrantRoleRequest {
                    user: "root".into(),
                    role: "root".into(),
                }) {
                    fail(EXIT_ERROR, go_err(&e));
                }
            }
            Err(e) => fail(EXIT_ERROR, go_err(&e)),
        }
    }
    outln("Authentication Enabled");
}

pub fn auth_disable(ctx: &mut Ctx, args: Vec<String>) {
    no_args(&args, "auth disable command does not accept any arguments");
    ctx.must(pb::AuthDisableRequest {}, EXIT_ERROR);
    outln("Authentication Disabled");
}

pub fn auth_status(ctx: &mut Ctx, args: Vec<String>) {
    no_args(&args, "auth status command does not accept any arguments");
    let resp = ctx.must(pb::AuthStatusRequest {}, EXIT_ERROR);
    match ctx.format {
        Format::Simple => {
            outln(format!("Authentication Status: {}", resp.enabled));
            outln(format!("AuthRevision: {}", resp.auth_revision));
        }
        Format::Json => outln(json::auth_status(&resp)),
        Format::Protobuf => protobuf(&resp),
        f => f.unsupported(),
    }
}

/// etcdctl's `readPasswordInteractive`: the password twice.
fn read_password_interactive(name: &str) -> String {
    let p1 = ask_password(&format!("Password of {name}: "))
        .unwrap_or_else(|e| fail(EXIT_BAD_ARGS, format!("failed to ask password: {e}")));
    if p1.is_empty() {
        fail(EXIT_BAD_ARGS, "empty password");
    }
    let p2 = ask_password(&format!("Type password of {name} again for confirmation: "))
        .unwrap_or_else(|e| fail(EXIT_BAD_ARGS, format!("failed to ask password: {e}")));
    if p1 != p2 {
        fail(EXIT_BAD_ARGS, "given passwords are different");
    }
    p1
}

pub fn user_add(ctx: &mut Ctx, args: Vec<String>) {
    if args.len() != 1 {
        fail(
            EXIT_BAD_ARGS,
            "user add command requires user name as its argument",
        );
    }
    let mut no_password = false;
    let (user, password);
    if !ctx.flags.bool("no-password") {
        let from_flag = ctx.flags.str("new-user-password");
        if !from_flag.is_empty() {
            user = args[0].clone();
            password = from_flag;
        } else {
            match args[0].split_once(':') {
                None => {
                    user = args[0].clone();
                    password = if ctx.flags.bool("interactive") {
                        read_password_interactive(&args[0])
                    } else {
                        scan_word()
                    };
                }
                Some((u, p)) => {
                    user = u.to_string();
                    password = p.to_string();
                    if user.is_empty() {
                        fail(EXIT_BAD_ARGS, "empty user name is not allowed");
                    }
                }
            }
        }
    } else {
        user = args[0].clone();
        password = String::new();
        no_password = true;
    }
    ctx.client();
    let resp = ctx.must_untimed(
        pb::AuthUserAddRequest {
            name: user.clone(),
            password,
            options: Some(authpb::UserAddOptions { no_password }),
            hashed_password: String::new(),
        },
        EXIT_ERROR,
    );
    print_plain(ctx, &format!("User {user} created"), &resp.header, true);
}

pub fn user_delete(ctx: &mut Ctx, args: Vec<String>) {
    if args.len() != 1 {
        fail(
            EXIT_BAD_ARGS,
            "user delete command requires user name as its argument",
        );
    }
    let resp = ctx.must_untimed(
        pb::AuthUserDeleteRequest {
            name: args[0].clone(),
        },
        EXIT_ERROR,
    );
    print_plain(
        ctx,
        &format!("User {} deleted", args[0]),
        &resp.header,
        true,
    );
}

pub fn user_get(ctx: &mut Ctx, args: Vec<String>) {
    if args.len() != 1 {
        fail(
            EXIT_BAD_ARGS,
            "user get command requires user name as its argument",
        );
    }
    let name = args[0].clone();
    let resp = ctx.must_untimed(pb::AuthUserGetRequest { name: name.clone() }, EXIT_ERROR);
    if ctx.flags.bool("detail") {
        outln(format!("User: {name}"));
        for role in &resp.roles {
            outln("");
            let r = ctx.must_untimed(pb::AuthRoleGetRequest { role: role.clone() }, EXIT_ERROR);
            print_role(ctx, role, &r);
        }
        return;
    }
    match ctx.format {
        Format::Simple => {
            outln(format!("User: {name}"));
            let mut line = String::from("Roles:");
            for r in &resp.roles {
                line.push(' ');
                line.push_str(r);
            }
            outln(line);
        }
        Format::Json => outln(json::names(&resp.header, "roles", &resp.roles)),
        Format::Protobuf => protobuf(&resp),
        f => f.unsupported(),
    }
}

pub fn user_list(ctx: &mut Ctx, args: Vec<String>) {
    no_args(&args, "user list command requires no arguments");
    let resp = ctx.must_untimed(pb::AuthUserListRequest {}, EXIT_ERROR);
    match ctx.format {
        Format::Simple => {
            for u in &resp.users {
                outln(u);
            }
        }
        Format::Json => outln(json::names(&resp.header, "users", &resp.users)),
        Format::Protobuf => protobuf(&resp),
        f => f.unsupported(),
    }
}

pub fn user_passwd(ctx: &mut Ctx, args: Vec<String>) {
    if args.len() != 1 {
        fail(
            EXIT_BAD_ARGS,
            "user passwd command requires user name as its argument",
        );
    }
    let password = if ctx.flags.bool("interactive") {
        read_password_interactive(&args[0])
    } else {
        scan_word()
    };
    let resp = ctx.must_untimed(
        pb::AuthUserChangePasswordRequest {
            name: args[0].clone(),
            password,
            hashed_password: String::new(),
        },
        EXIT_ERROR,
    );
    print_plain(ctx, "Password updated", &resp.header, true);
}

pub fn user_grant_role(ctx: &mut Ctx, args: Vec<String>) {
    if args.len() != 2 {
        fail(
            EXIT_BAD_ARGS,
            "user grant command requires user name and role name as its argument",
        );
    }
    let resp = ctx.must_untimed(
        pb::AuthUserGrantRoleRequest {
            user: args[0].clone(),
            role: args[1].clone(),
        },
        EXIT_ERROR,
    );
    print_plain(
        ctx,
        &format!("Role {} is granted to user {}", args[1], args[0]),
        &resp.header,
        true,
    );
}

pub fn user_revoke_role(ctx: &mut Ctx, args: Vec<String>) {
    if args.len() != 2 {
        fail(
            EXIT_BAD_ARGS,
            "user revoke-role requires user name and role name as its argument",
        );
    }
    let resp = ctx.must_untimed(
        pb::AuthUserRevokeRoleRequest {
            name: args[0].clone(),
            role: args[1].clone(),
        },
        EXIT_ERROR,
    );
    print_plain(
        ctx,
        &format!("Role {} is revoked from user {}", args[1], args[0]),
        &resp.header,
        true,
    );
}

pub fn role_add(ctx: &mut Ctx, args: Vec<String>) {
    if args.len() != 1 {
        fail(
            EXIT_BAD_ARGS,
            "role add command requires role name as its argument",
        );
    }
    let resp = ctx.must_untimed(
        pb::AuthRoleAddRequest {
            name: args[0].clone(),
        },
        EXIT_ERROR,
    );
    print_plain(
        ctx,
        &format!("Role {} created", args[0]),
        &resp.header,
        true,
    );
}

pub fn role_delete(ctx: &mut Ctx, args: Vec<String>) {
    if args.len() != 1 {
        fail(
            EXIT_BAD_ARGS,
            "role delete command requires role name as its argument",
        );
    }
    let resp = ctx.must_untimed(
        pb::AuthRoleDeleteRequest {
            role: args[0].clone(),
        },
        EXIT_ERROR,
    );
    print_plain(
        ctx,
        &format!("Role {} deleted", args[0]),
        &resp.header,
        true,
    );
}

fn perm_name(t: i32) -> &'static str {
    match t {
        0 => "READ",
        1 => "WRITE",
        2 => "READWRITE",
        _ => "UNKNOWN",
    }
}

/// etcdctl's `RoleGet` printers.
fn print_role(ctx: &Ctx, role: &str, r: &pb::AuthRoleGetResponse) {
    match ctx.format {
        Format::Simple => {
            outln(format!("Role {role}"));
            let print_range = |p: &authpb::Permission| {
                let mut line = Vec::new();
                if p.range_end[..] != [0] {
                    line.extend_from_slice(b"\t[");
                    line.extend_from_slice(&p.key);
                    line.extend_from_slice(b", ");
                    line.extend_from_slice(&p.range_end);
                    line.extend_from_slice(b")");
                } else {
                    line.extend_from_slice(b"\t[");
                    line.extend_from_slice(&p.key);
                    line.extend_from_slice(b", <open ended>");
                }
                if prefix_range_end(&p.key)[..] == p.range_end[..] {
                    line.extend_from_slice(b" (prefix ");
                    line.extend_from_slice(&p.key);
                    line.extend_from_slice(b")");
                }
                outln(line);
            };
            for (title, kinds) in [("KV Read:", [0, 2]), ("KV Write:", [1, 2])] {
                outln(title);
                for p in &r.perm {
                    if kinds.contains(&p.perm_type) {
                        if p.range_end.is_empty() {
                            out(b"\t");
                            outln(&p.key);
                        } else {
                            print_range(p);
                        }
                    }
                }
            }
        }
        Format::Json => outln(json::role_get(r)),
        Format::Fields => {
            fields_hdr(&r.header);
            for p in &r.perm {
                outln(format!("\"PermType\" :  {}", perm_name(p.perm_type)));
                outln(format!("\"Key\" : {}", go_quote(&p.key)));
                outln(format!("\"RangeEnd\" : {}", go_quote(&p.range_end)));
            }
        }
        Format::Protobuf => protobuf(r),
        f => f.unsupported(),
    }
}

pub fn role_get(ctx: &mut Ctx, args: Vec<String>) {
    if args.len() != 1 {
        fail(
            EXIT_BAD_ARGS,
            "role get command requires role name as its argument",
        );
    }
    let resp = ctx.must_untimed(
        pb::AuthRoleGetRequest {
            role: args[0].clone(),
        },
        EXIT_ERROR,
    );
    print_role(ctx, &args[0], &resp);
}

pub fn role_list(ctx: &mut Ctx, args: Vec<String>) {
    no_args(&args, "role list command requires no arguments");
    let resp = ctx.must_untimed(pb::AuthRoleListRequest {}, EXIT_ERROR);
    match ctx.format {
        Format::Simple => {
            for r in &resp.roles {
                outln(r);
            }
        }
        Format::Json => outln(json::names(&resp.header, "roles", &resp.roles)),
        Format::Fields => {
            fields_hdr(&resp.header);
            let mut line = String::from("\"Roles\" :");
            for r in &resp.roles {
                line.push(' ');
                line.push_str(&go_quote_str(r));
            }
            outln(line);
        }
        Format::Protobuf => protobuf(&resp),
        f => f.unsupported(),
    }
}

/// etcdctl's `permRange`: the key and range end of a permission argument.
fn perm_range(ctx: &Ctx, args: &[String]) -> (Vec<u8>, Vec<u8>) {
    let prefix = ctx.flags.bool("prefix");
    let from_key = ctx.flags.bool("from-key");
    let key = args[0].as_bytes().to_vec();
    if key.is_empty() {
        if prefix && from_key {
            fail(
                EXIT_BAD_ARGS,
                "--from-key and --prefix flags are mutually exclusive",
            );
        }
        let end = if prefix || from_key {
            vec![0]
        } else {
            Vec::new()
        };
        return (vec![0], end);
    }
    let end = if args.len() == 1 {
        if prefix {
            if from_key {
                fail(
                    EXIT_BAD_ARGS,
                    "--from-key and --prefix flags are mutually exclusive",
                );
            }
            prefix_range_end(&key).to_vec()
        } else if from_key {
            vec![0]
        } else {
            Vec::new()
        }
    } else {
        if prefix {
            fail(
                EXIT_BAD_ARGS,
                "unexpected endkey argument with --prefix flag",
            );
        }
        if from_key {
            fail(
                EXIT_BAD_ARGS,
                "unexpected endkey argument with --from-key flag",
            );
        }
        args[1].as_bytes().to_vec()
    };
    (key, end)
}

pub fn role_grant_permission(ctx: &mut Ctx, args: Vec<String>) {
    if args.len() < 3 {
        fail(
            EXIT_BAD_ARGS,
            "role grant command requires role name, permission type, and key [endkey] as its argument",
        );
    }
    let perm_type = match args[1].to_uppercase().as_str() {
        "READ" => 0,
        "WRITE" => 1,
        "READWRITE" => 2,
        _ => fail(
            EXIT_BAD_ARGS,
            format!("invalid permission type: {}", args[1]),
        ),
    };
    let (key, range_end) = perm_range(ctx, &args[2..]);
    let resp = ctx.must_untimed(
        pb::AuthRoleGrantPermissionRequest {
            name: args[0].clone(),
            perm: Some(authpb::Permission {
                perm_type,
                key: key.into(),
                range_end: range_end.into(),
            }),
        },
        EXIT_ERROR,
    );
    print_plain(
        ctx,
        &format!("Role {} updated", args[0]),
        &resp.header,
        true,
    );
}

pub fn role_revoke_permission(ctx: &mut Ctx, args: Vec<String>) {
    if args.len() < 2 {
        fail(
            EXIT_BAD_ARGS,
            "role revoke-permission command requires role name and key [endkey] as its argument",
        );
    }
    let (key, range_end) = perm_range(ctx, &args[1..]);
    let resp = ctx.must_untimed(
        pb::AuthRoleRevokePermissionRequest {
            role: args[0].clone(),
            key: key.into(),
            range_end: range_end.clone().into(),
        },
        EXIT_ERROR,
    );
    let role = &args[0];
    let key = &args[1];
    let simple = if range_end.is_empty() {
        format!("Permission of key {key} is revoked from role {role}")
    } else if range_end != [0] {
        format!(
            "Permission of range [{key}, {}) is revoked from role {role}",
            String::from_utf8_lossy(&range_end)
        )
    } else {
        format!("Permission of range [{key}, <open ended> is revoked from role {role}")
    };
    print_plain(ctx, &simple, &resp.header, true);
}
