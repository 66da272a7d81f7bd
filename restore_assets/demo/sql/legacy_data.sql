-- Demo data: three facilities, users, and %(patients)s patients with charts. Executed through
-- psycopg with parameters, never formatted. Names are invented; no real person is described.
INSERT INTO d_facility (id, facilityid, facilityname, zipcode, address, telephone, registereddate, membertype)
VALUES (1, '1.3.6.1.4.1.9414.72.101', 'オープンドルフィン内科', '113-0033', '東京都文京区本郷1-1', '03-0000-0101', '2010-04-01', 'PROCESS'),
       (2, '1.3.6.1.4.1.9414.72.102', 'さくら整形外科', '060-0001', '北海道札幌市中央区北1条', '011-000-0102', '2012-07-15', 'PROCESS'),
       (3, '1.3.6.1.4.1.9414.72.103', 'みなと小児科クリニック', '231-0001', '神奈川県横浜市中区新港', '045-000-0103', '2015-10-01', 'PROCESS');

INSERT INTO d_users (id, userid, password, sirname, givenname, commonname, email, membertype, registereddate, facility_id)
SELECT 10 + f.id * 10 + u.n,
       f.facilityid || ':' || (ARRAY['admin', 'doctor1', 'doctor2', 'nurse1'])[u.n],
       md5('demo-password-' || f.id || '-' || u.n),
       (ARRAY['青木', '佐藤', '鈴木', '高橋'])[u.n],
       (ARRAY['太郎', '花子', '一郎', '美咲'])[u.n],
       (ARRAY['青木 太郎', '佐藤 花子', '鈴木 一郎', '高橋 美咲'])[u.n],
       'user' || u.n || '@facility' || f.id || '.example',
       'PROCESS', f.registereddate, f.id
  FROM d_facility f CROSS JOIN generate_series(1, 4) AS u(n);

INSERT INTO d_roles (id, c_role, user_id, c_user)
SELECT 1000 + u.id * 2 + r.n, (ARRAY['user', 'admin'])[r.n], u.userid, u.id
  FROM d_users u CROSS JOIN generate_series(1, 2) AS r(n)
 WHERE r.n = 1 OR u.userid LIKE '%%:admin';

-- Two patients in three belong to facility .103, the one the runbook counts.
INSERT INTO d_patient (id, facilityid, patientid, fullname, kananame, romanname, gender, birthday, telephone, memo)
SELECT 100000 + p.n,
       CASE WHEN p.n %% 3 = 0 THEN '1.3.6.1.4.1.9414.72.101' ELSE '1.3.6.1.4.1.9414.72.103' END,
       lpad(p.n::text, greatest(6, length(p.n::text)), '0'),  -- lpad cuts longer text
       (ARRAY['山田', '田中', '伊藤', '渡辺', '中村'])[1 + p.n %% 5] || ' ' ||
           (ARRAY['健太', '陽子', '翔', 'さくら', '大輔', '結衣'])[1 + p.n %% 6],
       (ARRAY['ヤマダ', 'タナカ', 'イトウ', 'ワタナベ', 'ナカムラ'])[1 + p.n %% 5] || ' ' ||
           (ARRAY['ケンタ', 'ヨウコ', 'ショウ', 'サクラ', 'ダイスケ', 'ユイ'])[1 + p.n %% 6],
       NULL,
       CASE WHEN p.n %% 2 = 0 THEN 'female' ELSE 'male' END,
       to_char(date '1940-01-01' + ((p.n * 37) %% 25000)::int, 'YYYY-MM-DD'),
       '090-0000-' || lpad((p.n %% 10000)::text, 4, '0'),
       '既往歴なし'
  FROM generate_series(1, %(patients)s) AS p(n);

INSERT INTO d_karte (id, created, patient_id)
SELECT 200000 + p.id - 100000, date '2015-10-01' + (p.id %% 3000)::int, p.id FROM d_patient p;

INSERT INTO d_document (id, confirmed, started, recorded, status, creator_id, karte_id, docid, doctype, title, purpose, hasrp)
SELECT 300000 + k.id - 200000,
       k.created + time '09:30', k.created + time '09:00', k.created + time '09:31', 'F',
       42, k.id, md5(k.id::text), 'karte', '初診', 'treatment', true
  FROM d_karte k;

INSERT INTO d_module (id, confirmed, started, recorded, status, creator_id, karte_id, name, role, stampnumber, entity, beanbytes, doc_id)
SELECT 400000 + d.id - 300000, d.confirmed, d.started, d.recorded, 'F', d.creator_id, d.karte_id,
       '処方', 'p', 0, 'medOrder', convert_to('<bean>ロキソプロフェン 60mg</bean>', 'UTF8'), d.id
  FROM d_document d;

INSERT INTO claim_item (id, module_id, code, name, number, unit, classcode)
SELECT 500000 + m.id - 400000, m.id, '620098801', 'ロキソプロフェンナトリウム錠60mg', '3', '錠', '21'
  FROM d_module m;

INSERT INTO d_diagnosis (id, confirmed, started, recorded, status, creator_id, karte_id, diagnosis, diagnosiscode, diagnosiscodesystem)
SELECT 600000 + k.id - 200000, k.created + time '09:30', k.created + time '09:00', k.created + time '09:31', 'F', 42, k.id,
       (ARRAY['急性上気道炎', '高血圧症', '腰痛症', 'アレルギー性鼻炎'])[1 + k.id %% 4], '4659007', 'ICD10'
  FROM d_karte k;

INSERT INTO diagnosis_module (id, diagnosis_id, claim_status, sent_at)
SELECT 700000 + d.id - 600000, d.id, 'SENT', d.recorded FROM d_diagnosis d;

INSERT INTO d_appo (id, karte_id, c_name, c_date, memo)
SELECT 800000 + k.id - 200000, k.id, '再診', k.created + 14, '採血予定' FROM d_karte k WHERE k.id %% 5 = 0;

INSERT INTO d_patient_visit (id, facilityid, patient_id, pvtdate, status, department)
SELECT 900000 + p.id - 100000, p.facilityid, p.id, to_char(timestamp '2024-04-01 09:00' + (p.id %% 90) * interval '1 day', 'YYYY-MM-DD"T"HH24:MI:SS'), 0, '内科'
  FROM d_patient p;

INSERT INTO d_factor2_code (id, userpk, code, mobilenumber) VALUES (1, 42, '000000', '090-0000-0042');
INSERT INTO d_factor2_device (id, userpk, devicename, macaddress, entrydate) VALUES (1, 42, '診察室端末', '00:00:5e:00:53:2a', '2024-04-01');
INSERT INTO d_factor2_backupkey (id, userpk, backupkey) VALUES (1, 42, md5('demo-backup-key'));
INSERT INTO d_factor2_credential (id, user_pk, credential_type, label, secret, created_at)
VALUES (1, 42, 'TOTP', '佐藤 花子の端末', md5('demo-totp-secret'), '2024-04-01 10:00'),
       (2, 43, 'TOTP', '鈴木 一郎の端末', md5('demo-totp-secret-2'), '2024-04-02 10:00');

INSERT INTO d_audit_event (id, event_time, actor_id, actor_display_name, action, resource, payload_hash, event_hash)
SELECT n, timestamp '2024-04-01 09:00' + n * interval '1 minute', '1.3.6.1.4.1.9414.72.103:doctor1', '佐藤 花子',
       'CHART_OPEN', 'karte/' || (200000 + n), md5('payload' || n) || md5('p' || n), md5('event' || n) || md5('e' || n)
  FROM generate_series(1, 25) AS e(n);

SELECT setval('hibernate_sequence', 1000000);
-- The legacy capture showed facility_num at 103 after the last facility was created.
SELECT setval('facility_num', 103, true);
