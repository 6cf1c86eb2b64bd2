-- Accounts: users with roles, sellers, and rotating refresh tokens grouped in families.

create or replace function set_updated_at() returns trigger
language plpgsql as $$
begin
    new.updated_at = now();
    return new;
end
$$;

create table users (
    user_id       bigint generated always as identity primary key,
    -- normalised (trimmed, lower-case) by the app; the check keeps it that way
    email         text not null,
    password_hash text not null,
    name          text not null,
    roles         text[] not null default '{customer}',
    created_at    timestamptz not null default now(),
    updated_at    timestamptz not null default now(),
    constraint users_email_key unique (email),
    constraint users_email_normalised check (email = lower(btrim(email))),
    constraint users_roles_known check (roles <@ array['customer', 'seller', 'admin']::text[])
);
create trigger users_set_updated_at before update on users
    for each row execute function set_updated_at();

create table sellers (
    user_id      bigint primary key references users on delete cascade,
    display_name text not null,
    created_at   timestamptz not null default now()
);

create table refresh_tokens (
    refresh_token_id bigint generated always as identity primary key,
    family_id        uuid not null,
    user_id          bigint not null references users on delete cascade,
    -- SHA-256 of the opaque token; the token itself is never stored
    token_hash       bytea not null,
    expires_at       timestamptz not null,
    used_at          timestamptz,
    revoked_at       timestamptz,
    created_at       timestamptz not null default now(),
    constraint refresh_tokens_token_hash_key unique (token_hash)
);
create index refresh_tokens_family_idx on refresh_tokens (family_id);
create index refresh_tokens_expires_idx on refresh_tokens (expires_at);
