def test_smoke(popular_scores):
    print(popular_scores.head(20).to_string())
    print(len(popular_scores), popular_scores.user_id.nunique())
