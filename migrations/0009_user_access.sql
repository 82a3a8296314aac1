-- Disabled means disabled: a user disabled or deleted (in Airtable, applied by the inbound
-- sync, or by hand) is announced on coach_user_access with their id, at commit. Every API
-- process keeps the set of users whose access is gone and refuses their access tokens at
-- once, with no query per request.
CREATE FUNCTION notify_user_access() RETURNS trigger
    LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('coach_user_access', (CASE WHEN TG_OP = 'DELETE' THEN OLD.id ELSE NEW.id END)::text);
    RETURN NULL;
END $$;

CREATE TRIGGER users_access_changed AFTER UPDATE OF status, deleted_at ON users
    FOR EACH ROW
    WHEN (OLD.status IS DISTINCT FROM NEW.status OR OLD.deleted_at IS DISTINCT FROM NEW.deleted_at)
    EXECUTE FUNCTION notify_user_access();
CREATE TRIGGER users_access_deleted AFTER DELETE ON users
    FOR EACH ROW EXECUTE FUNCTION notify_user_access();

SELECT adopt_objects();
