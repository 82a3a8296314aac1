-- Demo data for the local stack. Fixed ids and ON CONFLICT make it safe to load twice.
INSERT INTO companies (id, name, code) VALUES
    ('00000000-0000-4000-8000-000000000001', 'Demo BV', 'DEMO')
ON CONFLICT DO NOTHING;

INSERT INTO days_of_week (id, name, iso_day) VALUES
    ('00000000-0000-4000-8000-000000000101', 'Maandag', 1),
    ('00000000-0000-4000-8000-000000000102', 'Dinsdag', 2),
    ('00000000-0000-4000-8000-000000000103', 'Woensdag', 3),
    ('00000000-0000-4000-8000-000000000104', 'Donderdag', 4),
    ('00000000-0000-4000-8000-000000000105', 'Vrijdag', 5),
    ('00000000-0000-4000-8000-000000000106', 'Zaterdag', 6),
    ('00000000-0000-4000-8000-000000000107', 'Zondag', 7)
ON CONFLICT DO NOTHING;

INSERT INTO goals (id, name, description, sort_order) VALUES
    ('00000000-0000-4000-8000-000000000201', 'Minder stress', 'Meer rust in je hoofd', 1),
    ('00000000-0000-4000-8000-000000000202', 'Beter slapen', 'Uitgerust wakker worden', 2),
    ('00000000-0000-4000-8000-000000000203', 'Meer focus', 'Aandacht bij wat je doet', 3)
ON CONFLICT DO NOTHING;

INSERT INTO mindset_categories (id, name, sort_order) VALUES
    ('00000000-0000-4000-8000-000000000301', 'Zelfvertrouwen', 1),
    ('00000000-0000-4000-8000-000000000302', 'Veerkracht', 2)
ON CONFLICT DO NOTHING;

INSERT INTO methods (id, name, description, kind, duration_minutes, goal_ids, sort_order) VALUES
    ('00000000-0000-4000-8000-000000000401', 'Ademhalingsoefening', '4-7-8 ademhaling', 'method', 5,
     '{00000000-0000-4000-8000-000000000201,00000000-0000-4000-8000-000000000202}', 1),
    ('00000000-0000-4000-8000-000000000402', 'Bodyscan', 'Aandacht door je lichaam', 'method', 15,
     '{00000000-0000-4000-8000-000000000202}', 2),
    ('00000000-0000-4000-8000-000000000403', 'Dankbaarheidsdagboek', 'Drie dingen per dag', 'habit', 5,
     '{00000000-0000-4000-8000-000000000201}', 3),
    ('00000000-0000-4000-8000-000000000404', 'Wandelen', 'Twintig minuten buiten', 'habit', 20,
     '{00000000-0000-4000-8000-000000000203}', 4)
ON CONFLICT DO NOTHING;

INSERT INTO overtuigingen (id, name, mindset_category_id, goal_ids, level) VALUES
    ('00000000-0000-4000-8000-000000000501', 'Ik mag fouten maken', '00000000-0000-4000-8000-000000000301',
     '{00000000-0000-4000-8000-000000000201}', 1),
    ('00000000-0000-4000-8000-000000000502', 'Rust is ook productief', '00000000-0000-4000-8000-000000000302',
     '{00000000-0000-4000-8000-000000000202}', 1)
ON CONFLICT DO NOTHING;

INSERT INTO prompts (id, key, category, title, body) VALUES
    ('00000000-0000-4000-8000-000000000601', 'welcome', 'prompt', 'Welkom', 'Fijn dat je er bent!'),
    ('00000000-0000-4000-8000-000000000602', 'app.streak_bonus_days', 'config', NULL, '7')
ON CONFLICT DO NOTHING;

INSERT INTO users (id, email, name, company_id) VALUES
    ('00000000-0000-4000-8000-000000000701', 'demo@example.com', 'Demo Gebruiker',
     '00000000-0000-4000-8000-000000000001')
ON CONFLICT DO NOTHING;

INSERT INTO programs (id, user_id, name, start_date, end_date, goal_ids, method_ids, day_of_week_ids) VALUES
    ('00000000-0000-4000-8000-000000000801', '00000000-0000-4000-8000-000000000701', 'Rustig aan',
     current_date - 7, current_date + 21,
     '{00000000-0000-4000-8000-000000000201}',
     '{00000000-0000-4000-8000-000000000401,00000000-0000-4000-8000-000000000402}',
     '{00000000-0000-4000-8000-000000000101,00000000-0000-4000-8000-000000000103}')
ON CONFLICT DO NOTHING;

INSERT INTO program_schedule (program_id, user_id, date, day_of_week_id, method_ids)
SELECT '00000000-0000-4000-8000-000000000801', '00000000-0000-4000-8000-000000000701', d::date,
       (SELECT id FROM days_of_week WHERE iso_day = extract(isodow FROM d)),
       '{00000000-0000-4000-8000-000000000401}'
FROM generate_series(current_date - 7, current_date + 21, interval '1 day') AS d
ON CONFLICT DO NOTHING;

INSERT INTO method_usage (user_id, method_id, program_id, used_on)
SELECT '00000000-0000-4000-8000-000000000701', '00000000-0000-4000-8000-000000000401',
       '00000000-0000-4000-8000-000000000801', d::date
FROM generate_series(current_date - 7, current_date - 1, interval '1 day') AS d
WHERE NOT EXISTS (SELECT 1 FROM method_usage WHERE user_id = '00000000-0000-4000-8000-000000000701');

INSERT INTO habit_usage (user_id, method_id, date)
SELECT '00000000-0000-4000-8000-000000000701', '00000000-0000-4000-8000-000000000403', d::date
FROM generate_series(current_date - 5, current_date, interval '1 day') AS d
ON CONFLICT DO NOTHING;
