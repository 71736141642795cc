-- Templates (with per-tone variants) and the tone rules that pick a voice.

CREATE TABLE templates (
    name       text        PRIMARY KEY,
    version    integer     NOT NULL,
    content    jsonb       NOT NULL, -- {"base": {subject, text, html}, "tones": {tone: {...}}}
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE template_versions (
    name       text        NOT NULL,
    version    integer     NOT NULL,
    content    jsonb       NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (name, version)
);

-- Tone rules in order; the last has no condition and is the default.
CREATE TABLE tone_rules (
    position  integer PRIMARY KEY,
    tone      text    NOT NULL,
    condition text    -- NULL for the default
);
