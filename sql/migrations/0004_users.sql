-- Named users who log in with a password (POST /api/v1/login) and get a JWT carrying
-- their scope and queue pattern. Only an argon2 hash of a password is ever stored: the
-- check below refuses anything else, plain text included.
CREATE TABLE skiplock.users (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name          text NOT NULL,
    password_hash text NOT NULL,
    scope         skiplock.token_scope NOT NULL,
    -- A glob over queue names, as api_tokens.queue_pattern; NULL: every queue.
    queue_pattern text,
    created_at    timestamptz NOT NULL DEFAULT now(),
    disabled_at   timestamptz,
    last_login_at timestamptz,
    CONSTRAINT name_is_valid CHECK (name ~ '^[A-Za-z0-9_.:@-]{1,100}$'),
    CONSTRAINT queue_pattern_is_valid CHECK (queue_pattern ~ '^[A-Za-z0-9_.:*?-]{1,64}$'),
    CONSTRAINT password_hash_is_argon2 CHECK (password_hash ~ '^\$argon2(id|i|d)\$'),
    -- Login looks a user up by name: this unique index serves it.
    CONSTRAINT users_name_is_unique UNIQUE (name)
);
